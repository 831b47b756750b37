"""The harma-index command line, run in-process."""

from __future__ import annotations

import json

import pytest

from index.cli import build_parser, main
from index.ids import image_id_from_path


@pytest.fixture()
def cli_snapshot(sample_archive, tmp_path, capsys):
    root = tmp_path / "snapshots"
    code = main(["build", "--snapshots", str(root), "--model", "tiny-vit", "--archive", str(sample_archive),
                 "--workers", "0", "--batch-size", "4"])
    assert code == 0
    return root, capsys.readouterr().out


def test_build_prints_summary(cli_snapshot):
    assert "published" in cli_snapshot[1]
    assert "12 images" in cli_snapshot[1]


def test_info_prints_manifest(cli_snapshot, capsys):
    assert main(["info", "--snapshots", str(cli_snapshot[0])]) == 0
    output = capsys.readouterr().out
    manifest = json.loads(output[output.index("{"):])
    assert manifest["image_count"] == 12


def test_query_text_ranks_images(cli_snapshot, capsys):
    assert main(["query", "--snapshots", str(cli_snapshot[0]), "--model", "tiny-vit", "--text", "a beach", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "1"


def test_query_image_finds_itself(cli_snapshot, sample_archive, capsys):
    relative = "ucm_captions/images/forest/forest00.jpg"
    assert main(["query", "--snapshots", str(cli_snapshot[0]), "--model", "tiny-vit", "--image",
                 str(sample_archive / relative), "--target", "images", "-k", "1"]) == 0
    assert image_id_from_path(relative) in capsys.readouterr().out


def test_update_reuses_everything(cli_snapshot, sample_archive, capsys):
    assert main(["update", "--snapshots", str(cli_snapshot[0]), "--model", "tiny-vit", "--archive",
                 str(sample_archive), "--workers", "0"]) == 0
    assert "0 embedded, 12 reused" in capsys.readouterr().out


def test_query_with_other_model_fails(cli_snapshot, capsys):
    code = main(["query", "--snapshots", str(cli_snapshot[0]), "--model", "tiny-conv-bert", "--text", "beach"])
    assert code == 2
    assert "fingerprint" in capsys.readouterr().err


def test_info_without_snapshot_fails(tmp_path, capsys):
    assert main(["info", "--snapshots", str(tmp_path)]) == 2
    assert "no published snapshot" in capsys.readouterr().err


def test_query_needs_text_or_image():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["query"])
