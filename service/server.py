"""Running the service: ``serve(settings)`` (what ``sparseretr serve`` calls) and its CLI flags."""

from __future__ import annotations

import argparse
import logging

from pydantic import SecretStr
from sparseretr.service.settings import Settings

log = logging.getLogger("service")


# Short names kept from the first CLI: field -> extra option strings.
ALIASES = {"index_path": ["--index"], "data_path": ["--data"], "build_if_missing": []}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per Settings field (Settings is the one source of truth): --max-k,
    --default-alpha, --refresh-interval-s, ... Each overrides its SPARSERETR_* variable;
    booleans take --x / --no-x. Values are validated by Settings, as from the environment."""
    g = p.add_argument_group("settings (each also SPARSERETR_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "SPARSERETR_" + name.upper()
        default = field.default if not isinstance(field.default, SecretStr) else None
        text = f"{field.description + '; ' if field.description else ''}{env}"
        if default is not None and name != "api_key":
            text += f" (default {default})"
        names = [*ALIASES.get(name, []), flag]
        if field.annotation is bool:
            g.add_argument(*names, dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=text)  # fmt: skip
        else:
            g.add_argument(*names, dest=name, default=None, metavar=name.upper(), help=text)
    g.add_argument("--no-build", dest="build_if_missing", action="store_false",
                   help="never build a missing index (= --no-build-if-missing)")  # fmt: skip


def settings_from_args(a: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by every flag given on the command line."""
    given = {
        name: getattr(a, name)
        for name in Settings.model_fields
        if getattr(a, name, None) is not None
    }
    return Settings(**given)


def serve(settings: Settings | None = None) -> None:
    """Run uvicorn with the app factory (one process: the engine is shared by threads)."""
    import uvicorn
    from sparseretr.service.app import create_app

    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
