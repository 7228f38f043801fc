"""musichal-compare end to end: JSON + PNG written, a missing model is one clear line, plots are not blank."""

from __future__ import annotations

import json

import pytest

from services.compare import cli
from services.compare.plots import plot_results
from services.compare.schema import validate
from shared.errors import ParameterError
from tests.compare.conftest import silence_check


def test_plot_is_written_and_not_blank(scale_results, tmp_path):
    path = plot_results(scale_results, tmp_path / "compare.png")
    assert path.stat().st_size > 30_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert silence_check(path) > 0.05
    with pytest.raises(ParameterError):
        plot_results({"pipelines": {}}, tmp_path / "bad.png")


def test_cli_writes_valid_json_and_png(chromatic_scale, tiny_wav2vec_dir, tmp_path, capsys):
    wav, reference = chromatic_scale
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    rc = cli.main(
        [
            "--file",
            str(wav),
            "--wav2vec-model",
            str(tiny_wav2vec_dir),
            "--reference",
            str(reference),
            "--segments",
            "14",
            "--duration",
            "9",
            "--vocabulary-size",
            "8",
            "--output",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    results = json.loads(out.read_text())
    validate(results)
    assert results["input"]["events"] == 14
    assert results["pipelines"]["wav2vec"]["model"] == str(tiny_wav2vec_dir)
    assert png.stat().st_size > 30_000
    printed = capsys.readouterr().out
    assert "Recommendations" in printed and "overall" in printed


def test_missing_model_is_one_clear_line_and_says_how_to_provide_a_dir(chromatic_scale, tmp_path, capsys):
    wav, _ = chromatic_scale
    rc = cli.main(["--file", str(wav), "--wav2vec-model", str(tmp_path / "no_such_model"), "--segments", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 2
    assert err[0].startswith("musichal-compare: wav2vec model directory") and "does not exist" in err[0]
    assert "--wav2vec-model /path/to" in err[1]


def test_missing_file_argument(capsys):
    assert cli.main([]) == 2
    assert "--file is required" in capsys.readouterr().err
