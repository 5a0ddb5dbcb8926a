"""The one set of step-importance defaults (issue 26): the ``importance`` job kind's params,
``raml importance``'s flags (its ``--help`` names them) and Explore's checkbox all start from
these. Imports nothing, so the CLI's parser can read it without loading the job queue."""

ATTENTION = True  # also the answer probe's attention per step (eager attention for probe tokens only)
EVERY_BOUNDARY = False  # score every later boundary, not only the end
