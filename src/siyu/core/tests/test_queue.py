"""The task queue: on-commit enqueueing, periodic tasks, and the Redis mode for real."""

import os
import subprocess
import sys
import time

import pytest
from django.db import transaction
from huey.contrib.djhuey import HUEY

from siyu.core import tasks
from siyu.core.tasks import on_commit_task


def test_a_task_is_enqueued_only_when_the_transaction_commits(
    db, django_capture_on_commit_callbacks
):
    results = []
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            on_commit_task(lambda value: results.append(value), "after-commit")
            assert results == []
    assert results == ["after-commit"]


def test_a_rolled_back_transaction_enqueues_nothing(db, django_capture_on_commit_callbacks):
    results = []
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            on_commit_task(lambda: results.append("ran"))
            raise RuntimeError("rollback")
    assert results == []


def test_the_event_sweep_is_a_periodic_task():
    from datetime import datetime

    periodic = {task.name for task in HUEY._registry.periodic_tasks}
    assert "redeliver_events" in periodic
    # it runs every minute
    sweep = tasks.redeliver_events.s()
    assert sweep.validate_datetime(datetime(2026, 1, 1, 3, 17))
    assert sweep.validate_datetime(datetime(2026, 1, 1, 3, 18))


def _siyu(*args, env, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "siyu.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.redis
def test_a_task_runs_through_redis_on_a_separate_worker(redis_url, tmp_path):
    # given: a worker process in Redis mode, with its own database
    env = {
        **os.environ,
        "SIYU_REDIS_URL": redis_url,
        "SIYU_DATA_DIR": str(tmp_path),
        "SIYU_QUEUE_NAME": "siyu-test-redis",
    }
    env.pop("SIYU_DATABASE_URL", None)
    assert _siyu("migrate", env=env).returncode == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "siyu.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # when: another process sends a task through the queue
        started = time.monotonic()
        ping = _siyu("queue", "ping", "--timeout", "30", env=env)
        # then: the worker (a different pid) answered through Redis
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.startswith("pong from ")
        assert f"pid {worker.pid} " in ping.stdout
        assert time.monotonic() - started < 30
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=15)
    assert "on redis" in output
    assert "siyu.core.tasks.echo" in output


@pytest.mark.redis
def test_queue_ping_fails_clearly_when_no_worker_runs(redis_url, tmp_path):
    env = {
        **os.environ,
        "SIYU_REDIS_URL": redis_url,
        "SIYU_DATA_DIR": str(tmp_path),
        "SIYU_QUEUE_NAME": "siyu-test-nobody",
    }
    ping = _siyu("queue", "ping", "--timeout", "1", env=env)
    assert ping.returncode == 1
    assert "No worker answered within 1s" in ping.stderr
