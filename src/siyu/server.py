"""Run the WSGI application under gunicorn from inside the ``siyu`` command."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class SiyuServer(BaseApplication):
    """Gunicorn with our options, without a config file or gunicorn's own argv parsing."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from siyu.wsgi import application

        return application


def run_gunicorn(*, host: str, port: int, workers: int, threads: int) -> None:
    SiyuServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "accesslog": "-",
            "timeout": 60,
            "graceful_timeout": 10,
            # No control socket in ~/.gunicorn: several servers (demo, tests) may run at once.
            "control_socket_disable": True,
        }
    ).run()
