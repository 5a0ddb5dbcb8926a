"""The built-in job kinds, one module per domain: ``run`` (run + batch), ``importance``,
``branch``, ``grids`` (proxy surface + random landscape), ``exact`` (exact update + its
landscape), ``export`` (figure images). Each module holds its kinds' typed params (a frozen
dataclass each) and their ``run(params, ctx)`` functions; ``backend.jobs.registry`` lists
them. Nothing here registers itself, and nothing here imports the registry."""
