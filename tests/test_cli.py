import pytest

from serlib.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_unknown_or_missing_command_exits_2(capsys):
    assert main(["nosuch"]) == 2 and "unknown command" in capsys.readouterr().err
    assert main([]) == 2


def test_study_takes_profile_as_the_makefile_spells_it(capsys):
    assert main(["study", "--profile", "no-such-profile"]) == 2
    assert "no-such-profile" in capsys.readouterr().err
