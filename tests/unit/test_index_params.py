"""Index build / search parameters from the settings, and their validation (no Milvus)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from workbench.errors import ConfigurationError
from workbench.settings import StorageSettings, WorkbenchSettings
from workbench.store.vectors import VectorIndex, index_params, pq_m_for, search_params

pytestmark = pytest.mark.unit


def test_defaults_for_face_vectors() -> None:
    st = StorageSettings()
    assert index_params("HNSW", st, 512) == {"M": 16, "efConstruction": 200}
    assert index_params("IVF_FLAT", st, 512) == {"nlist": 1024}
    assert index_params("IVF_SQ8", st, 128) == {"nlist": 1024}
    # One sub-quantizer per 8 dimensions: 64 for 512-d ArcFace, 16 for 128-d dlib/MobileFaceNet.
    assert index_params("IVF_PQ", st, 512) == {"nlist": 1024, "m": 64, "nbits": 8}
    assert index_params("IVF_PQ", st, 128) == {"nlist": 1024, "m": 16, "nbits": 8}
    assert index_params("FLAT", st, 512) == {}
    assert st.milvus_consistency == "Strong" and st.milvus_db is None


def test_settings_reach_the_params() -> None:
    st = StorageSettings(
        hnsw_m=32, hnsw_ef_construction=400, hnsw_ef=64, ivf_nlist=256, ivf_nprobe=16, pq_m=32
    )
    assert index_params("HNSW", st, 512) == {"M": 32, "efConstruction": 400}
    assert index_params("IVF_PQ", st, 512) == {"nlist": 256, "m": 32, "nbits": 8}
    assert search_params("HNSW", st, 10) == {"ef": 64}
    assert search_params("IVF_SQ8", st, 10) == {"nprobe": 16}
    assert search_params("FLAT", st, 10) == {}


def test_hnsw_ef_never_below_top_k() -> None:
    """Milvus refuses ef < top_k; a large top_k raises ef instead of failing."""
    assert search_params("HNSW", StorageSettings(hnsw_ef=16), 200) == {"ef": 200}


def test_pq_m_default_for_odd_dimensions() -> None:
    st = StorageSettings()
    assert pq_m_for(100, st) == 10  # 100 // 8 = 12 does not divide 100; 10 does
    assert pq_m_for(4, st) == 1
    assert 100 % pq_m_for(100, st) == 0


def test_pq_m_must_divide_dim() -> None:
    st = StorageSettings(pq_m=24)
    with pytest.raises(ConfigurationError, match=r"'faces_mobilefacenet'.*dim 128") as e:
        index_params("IVF_PQ", st, 128, "faces_mobilefacenet")
    assert "WORKBENCH_STORAGE__PQ_M" in str(e.value) and "16" in str(e.value)


def test_bad_settings_are_refused_with_the_variable() -> None:
    with pytest.raises(ValidationError, match="ivf_nprobe 64 is larger than ivf_nlist 32"):
        WorkbenchSettings(storage={"ivf_nlist": 32, "ivf_nprobe": 64})
    with pytest.raises(ValidationError, match="pq_nbits"):
        StorageSettings(pq_nbits=17)
    with pytest.raises(ValidationError, match="milvus_db"):
        StorageSettings(milvus_db="no spaces or-dashes")
    with pytest.raises(ValidationError, match="milvus_consistency"):
        StorageSettings(milvus_consistency="Sometimes")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_STORAGE__HNSW_EF", "256")
    monkeypatch.setenv("WORKBENCH_STORAGE__MILVUS_DB", "team_a")
    monkeypatch.setenv("WORKBENCH_STORAGE__MILVUS_CONSISTENCY", "Bounded")
    st = WorkbenchSettings().storage
    assert (st.hnsw_ef, st.milvus_db, st.milvus_consistency) == (256, "team_a", "Bounded")


def test_lite_refuses_ivf_pq_and_databases(tmp_path: Path) -> None:
    uri = str(tmp_path / "vectors.db")
    index = VectorIndex(uri, StorageSettings(), client=object())  # no Milvus opened
    with pytest.raises(ConfigurationError, match="Milvus Lite .* has no IVF_PQ"):
        index.build_params("faces_x", 128, "IVF_PQ")
    with pytest.raises(ConfigurationError, match="milvus_db 'team_a' needs a Milvus server"):
        _ = VectorIndex(uri, StorageSettings(milvus_db="team_a")).client
