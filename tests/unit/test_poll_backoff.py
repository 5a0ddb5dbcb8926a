"""The poll delay of app/poll.py: fast after a change, doubling while nothing changes, bounded."""

from app import poll


def test_first_poll_and_every_change_are_fast():
    assert poll.next_delay(None, changed=False) == poll.FAST_S
    assert poll.next_delay(poll.SLOWEST_S, changed=True) == poll.FAST_S


def test_nothing_new_doubles_the_delay_up_to_the_slowest():
    delays, d = [], None
    for _ in range(10):
        d = poll.next_delay(d, changed=d is None)
        delays.append(d)
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == poll.SLOWEST_S and delays[-1] == poll.SLOWEST_S


def test_panel_signature_ignores_the_clock_and_finished_jobs():
    from app.jobs_panel import signature
    from backend.jobs.queue import Job

    running = Job(id=1, kind="run", params={}, state="running", stage="generate", done=3, total=10, started=1.0)
    later = Job(id=1, kind="run", params={}, state="running", stage="generate", done=3, total=10, started=1.0)
    moved = Job(id=1, kind="run", params={}, state="running", stage="generate", done=4, total=10, started=1.0)
    over = Job(id=2, kind="run", params={}, state="finished")
    assert signature([running]) == signature([later, over])
    assert signature([running]) != signature([moved])
