"""Settings from files: `mlepi mc --config FILE` and `mlepi train ... --set KEY=VALUE`."""

import pytest
import yaml

from mlepi_core.cli import main, parse_arguments
from mlepi_core.cli.config_files import apply_overrides
from mlepi_core.training import TrainConfig


def write(tmp_path, settings, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_mc_config_file_sets_every_flag_and_the_command_line_wins(tmp_path):
    cfg = write(tmp_path, {"structure": "AB", "temperature": [0, 60, 300], "samples": 50, "seed": 7,
                           "antithetic": True, "batch_size": 2, "supercell": 9, "electrons": ["electron"],
                           "spectral-every": 0})
    args = parse_arguments(["mc", "--config", cfg])
    assert (args.structure, args.temperature, args.samples, args.seed) == ("AB", [0.0, 60.0, 300.0], 50, 7)
    assert (args.antithetic, args.batch_size, args.supercell, args.electrons, args.spectral_every) == \
        (True, 2, 9, ["electron"], 0)
    args = parse_arguments(["mc", "--config", cfg, "--samples", "8", "--temperature", "120"])
    assert (args.samples, args.temperature, args.seed) == (8, [120.0], 7)


def test_mc_config_without_structure_takes_it_from_the_command_line(tmp_path):
    cfg = write(tmp_path, {"samples": 4})
    args = parse_arguments(["mc", "AA", "--config", cfg])
    assert (args.structure, args.samples) == ("AA", 4)


@pytest.mark.parametrize("settings, message", [
    ({"structure": "AB", "temperature": ["nan"]}, "must be a finite number"),
    ({"structure": "AB", "sampels": 4}, "unknown setting 'sampels'"),
    ({"structure": "AB", "antithetic": "yes"}, "is a switch"),
    ({"samples": 4}, "no structure"),
])
def test_mc_config_values_are_checked_like_flags(tmp_path, capsys, settings, message):
    cfg = write(tmp_path, settings)
    try:
        code = main(["mc", "--config", cfg, "--out", str(tmp_path / "out")])
    except SystemExit as stop:  # argparse's own refusal
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_mc_config_errors_are_one_line(tmp_path, capsys):
    assert main(["mc", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert main(["mc", "--config", str(tmp_path / "list.yaml")]) == 2
    assert "a mapping of settings" in capsys.readouterr().err
    cfg = write(tmp_path, {"structure": "AB"})
    assert main(["mc", "AA", "--config", cfg]) == 2
    assert "given twice" in capsys.readouterr().err


def test_train_set_overrides_top_level_and_nested_settings():
    base = TrainConfig.load("configs/phonon_hedgenet.yaml").to_dict()
    changed = apply_overrides(base, ["lr=3e-4", "model.num_layers=3", "model.cutoffs.inter=6.5",
                                     "evaluate_splits=[test]"])
    cfg = TrainConfig.from_dict(changed)
    assert cfg.lr == 3e-4 and cfg.evaluate_splits == ("test",)
    assert changed["model"]["num_layers"] == 3 and changed["model"]["cutoffs"]["inter"] == 6.5
    assert base["model"]["num_layers"] == 2  # the original is left alone
    for bad, message in [("lr", "KEY=VALUE"), ("lrate=1", "unknown setting 'lrate'"),
                         ("lr.x=1", "not a group of settings"), ("lr=fast", "expected a number")]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(base, [bad])


def test_train_set_refuses_an_unknown_setting_before_training(tmp_path, capsys):
    assert main(["train", "phonon", "configs/phonon_hedgenet.yaml", "--set", "model.nonsense=1",
                 "--output", str(tmp_path / "run")]) == 2
    assert "unknown setting 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
