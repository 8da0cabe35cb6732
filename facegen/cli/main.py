"""The `facegen` console script: registers each verb group and turns user errors into one line."""

from __future__ import annotations

import sys

import typer

from facegen.errors import FacegenError

app = typer.Typer(
    name="facegen",
    help="Manufacture balanced, labelled synthetic face datasets with FaceCrafter on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    # Each verb group lives in its own module with a `register(app)` function.
    from facegen.cli import analysis_cmds, balance_cmds, model_cmds, plan_cmds, synthface_cmds, train_cmds

    for module in (model_cmds, plan_cmds, balance_cmds, analysis_cmds, train_cmds, synthface_cmds):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a FacegenError becomes `error: ...` on stderr and exit code 2. As the
    console script (`argv` None) an interrupted command (130) leaves at once (see `_leave_interrupted`)."""
    code = _main(argv)
    if code == 130 and argv is None:
        _leave_interrupted()
    return code


def _main(argv: list[str] | None = None) -> int:
    try:
        # In non-standalone mode click/typer *return* exit codes (typer.Exit(n), Ctrl-C -> 130).
        rv = app(args=argv, standalone_mode=False)
    except FacegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer.Exit / click exits
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors (bad option, unknown command, no args): click's, or the copy typer >= 0.22 vendors.
        if _is_click_error(exc):
            if type(exc).__name__ == "Abort":
                print("aborted", file=sys.stderr)
                return 130
            exc.show()
            return int(getattr(exc, "exit_code", 2))
        raise
    return rv if isinstance(rv, int) else 0


def _is_click_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return (module.startswith("click") or module.startswith("typer")) and (
        hasattr(exc, "show") or type(exc).__name__ == "Abort"
    )


def _leave_interrupted() -> None:
    """Exit 130 through ``os._exit`` once the command's own cleanup is done (Ray shut down, temporaries
    removed): interpreter teardown with Ray's C++ threads still unwinding once segfaulted (-11) after
    "interrupted" had been printed."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
