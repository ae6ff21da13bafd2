"""Command-line options from a dataclass: ``Literal`` choices are checked on flags and in files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from training.engine.options import parse_config


@dataclass
class Options:
    method: Literal["one", "two"] = field(default="one", metadata={"help": "which"})
    size: int = 3
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)


def test_a_literal_option_takes_its_values_only(capsys):
    assert parse_config(Options, ["--method", "two"]).method == "two"
    with pytest.raises(SystemExit):
        parse_config(Options, ["--method", "three"])
    assert "invalid choice: 'three'" in capsys.readouterr().err


def test_a_config_file_is_checked_against_the_literal_too(tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"method": "two", "mean": [0.1, 0.2, 0.3]}))
    bad.write_text(json.dumps({"method": "three"}))
    options = parse_config(Options, ["--config", str(good), "--size", "5"])
    assert (options.method, options.size, options.mean) == ("two", 5, (0.1, 0.2, 0.3))
    with pytest.raises(SystemExit):
        parse_config(Options, ["--config", str(bad)])
    assert "method must be one of one, two; got 'three'" in capsys.readouterr().err
