"""``meshpilot analyze -f`` offline, judged against a mesh config (the real CLI process):
given by ``--mesh-config`` (or istioctl's spelling ``--meshConfigFile``) or found among
the files, it makes a network ``meshNetworks`` does not list MP2032 at the object's line,
as apply does; its own errors stop the analysis, and two mesh configs are refused.

Follows ``istioctl analyze --meshConfigFile``, which reads the mesh config (and its
``meshNetworks``) from a file when no cluster is there."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.unit.test_validation_network_names import DOCS, MESH


def files(tmp_path: Path) -> tuple[Path, Path]:
    objects, mesh = tmp_path / "objects.yaml", tmp_path / "mesh.yaml"
    objects.write_text(DOCS)
    mesh.write_text(MESH)
    return objects, mesh


def test_analyze_with_a_mesh_config_flag_finds_unlisted_networks(tmp_path: Path) -> None:
    objects, mesh = files(tmp_path)
    nowhere = tmp_path / "no-control-plane"
    for flag in ("--mesh-config", "--meshConfigFile"):
        result = run_cli("analyze", "-f", str(objects), flag, str(mesh), state_dir=nowhere)
        assert result.returncode == 0, result.stderr
        text = result.stdout + result.stderr
        assert f"{objects}:6:" in text and "'netwrok-a'" in text, text
        assert "did you mean 'network-a'" in text
        assert text.count("MP2032") == 2, text  # netwrok-a and elsewhere, not network-a
        assert "4 object(s) in 1 file(s) are valid, 2 warning(s)" in result.stdout
    # without a mesh config there is nothing to compare the names with
    plain = run_cli("analyze", "-f", str(objects), state_dir=nowhere)
    assert plain.returncode == 0 and "MP2032" not in plain.stdout + plain.stderr
    assert not nowhere.exists()


def test_a_mesh_config_among_the_files_is_read_as_one(tmp_path: Path) -> None:
    objects, mesh = files(tmp_path)
    result = run_cli("analyze", "-f", str(tmp_path), state_dir=tmp_path / "none")
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("MP2032") == 2
    assert "4 object(s) in 1 file(s)" in result.stdout  # the mesh config is no object
    # two of them: which one would the control plane run with?
    other = tmp_path / "other-mesh.yaml"
    other.write_text("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    twice = run_cli("analyze", "-f", str(objects), "-f", str(other), "--mesh-config",
                    str(mesh), state_dir=tmp_path / "none")
    assert twice.returncode == 1 and "more than one mesh config" in twice.stderr


def test_a_mesh_config_with_errors_fails_the_analysis_at_its_line(tmp_path: Path) -> None:
    objects, mesh = files(tmp_path)
    mesh.write_text(MESH.replace("fromCidr: 10.3.0.0/16", "fromCidr: ten"))
    result = run_cli("analyze", "-f", str(objects), "--mesh-config", str(mesh),
                     state_dir=tmp_path / "none")
    assert result.returncode == 1
    assert f"{mesh}:4:" in result.stderr and "MP0081" in result.stderr, result.stderr
