"""The console script's contract: user errors are one line + exit 2, usage errors exit 2, codes propagate."""

import subprocess
import sys

from facegen.cli.main import main


def test_help_lists_every_verb_and_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("plan", "balance", "inspect", "export", "submit", "model", "generate", "extract", "verify", "train"):
        assert verb in out


def test_unknown_command_and_option_are_usage_errors(capsys):
    assert main(["no-such-verb"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["plan", "--no-such-option"]) == 2


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    code = main(["plan", "--manifest", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "missing.yaml" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_exit_codes_returned_by_commands_reach_the_shell(tmp_path):
    # `inspect` on a folder that is not a dataset returns a non-zero code through typer.Exit/SystemExit.
    proc = subprocess.run(
        [sys.executable, "-m", "facegen.cli.main", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
