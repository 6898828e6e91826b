"""pipelines/devices.py: the CPUs a process may use, the CPU's extensions, and what `--dtype auto` picks."""

from __future__ import annotations

import logging

import pytest

from pipelines import devices
from pipelines.errors import ConfigError

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}
AMX = AVX2 | {"avx512f", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize("flags, expected", [(AVX2, "float32"), (AVX512_BF16, "bf16"), (AMX, "bf16")])
def test_auto_picks_bf16_on_a_cpu_only_with_native_bf16(flags, expected):
    assert devices.resolve_dtype("auto", "cpu", flags=flags) == expected


def test_auto_on_cuda_is_bf16_where_supported_else_fp16():
    assert devices.resolve_dtype("auto", "cuda", cuda_bf16=True) == "bf16"
    assert devices.resolve_dtype("auto", "cuda", cuda_bf16=False) == "fp16"
    assert devices.resolve_dtype("float32", "cuda", cuda_bf16=True) == "float32"


def test_explicit_bf16_on_an_avx2_cpu_is_kept_with_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(devices, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="pipelines.devices"):
        assert devices.resolve_dtype("bf16", "cpu", flags=AVX2) == "bf16"
        assert devices.resolve_dtype("bf16", "cpu", flags=AVX2) == "bf16"
        assert devices.resolve_dtype("bf16", "cpu", flags=AMX) == "bf16"
    warnings = [r for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "--dtype auto picks float32" in warnings[0].getMessage()


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ConfigError, match="dtype must be one of auto, float32, bf16, fp16"):
        devices.resolve_dtype("int4", "cpu", flags=AVX2)


def test_cpu_description_names_the_model_and_extensions(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx avx2 avx512f avx512_bf16\n")
    assert devices.cpu_description(info) == "AMD EPYC 9B14 (avx2, avx512f, avx512_bf16)"
    assert devices.cpu_flags(info) >= {"avx2", "avx512_bf16"}
    assert devices.cpu_flags(tmp_path / "missing") == frozenset()


def test_score_defaults_to_auto_and_fingerprints_the_precision_it_used(tmp_path):
    from pipelines.stages.score import ScoreConfig, fingerprint_settings

    cfg = ScoreConfig(teacher="t", out=tmp_path, transfer=tmp_path)
    assert cfg.dtype == "auto" and not cfg.problems()
    assert fingerprint_settings(cfg, "cpu", "float32")["dtype"] == "float32"
    assert fingerprint_settings(cfg, "cpu", "bf16") != fingerprint_settings(cfg, "cpu", "float32")
