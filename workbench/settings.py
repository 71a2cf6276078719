"""The one settings object of the workbench.

Every field maps to an environment variable with the prefix ``WORKBENCH_``;
nested sections use a double underscore (``WORKBENCH_DETECTION__MIN_SCORE``).
Settings are passed to constructors, never read from a global.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Metric = Literal["cosine", "l2"]
Device = Literal["auto", "cpu", "cuda"]
IndexType = Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX"]


class DetectionSettings(BaseModel):
    """Which detections count as faces."""

    min_score: float = Field(0.5, ge=0.0, le=1.0, description="minimum detector confidence")
    min_face_size: int = Field(
        20, ge=1, description="minimum shorter side of a face box, in pixels of the photo"
    )
    input_size: int = Field(640, ge=128, description="detector input (square), in pixels")
    pad_retry: bool = Field(
        True,
        description="a photo where no face is found is looked at again centred on a canvas"
        " twice its size: a face filling the whole photo (a face crop, an ID photo, an avatar)"
        " is larger than detectors are trained to see",
    )


class LimitSettings(BaseModel):
    """Guards against hostile or absurd input; a photo over a limit is an `error`."""

    max_file_bytes: int = Field(200 * 2**20, description="largest photo file accepted")
    max_pixels: int = Field(
        80_000_000,
        description="largest width × height decoded (Pillow's own bomb guard still refuses"
        " anything over ~179 Mpx)",
    )
    max_side: int = Field(30_000, description="largest width or height decoded")
    min_side: int = Field(16, description="smallest width or height worth decoding")
    max_zip_member_bytes: int = Field(
        200 * 2**20, description="largest uncompressed size of one archive member"
    )
    max_zip_ratio: float = Field(
        200.0, description="largest uncompressed / compressed ratio of an archive member"
    )
    max_zip_members: int = Field(1_000_000, description="most members read from one archive")
    analysis_side: int = Field(
        2560,
        ge=0,
        description="a JPEG larger than this (longest side, px) is decoded for the models at a"
        " reduced scale (1/2, 1/4 or 1/8, never below this side): detectors work at 640-1280 px,"
        " so a 6000 × 6000 photo costs a quarter of the memory for the same faces. Boxes are"
        " stored in the photo's own pixels. 0: always decode in full",
    )
    pixels_in_flight: int = Field(
        48_000_000,
        ge=0,
        description="decoded pixels one batch may hold (the ingest reads the next batch while"
        " the models work on this one): a batch of large photos is cut short so memory stays"
        " bounded. 0: batches of batch_size photos whatever their size",
    )


class LocalPackSettings(BaseModel):
    """The `local` pack: a directory with a detector ONNX and a recognizer ONNX."""

    models_dir: Path = Field(
        Path("~/.workbench/models"), description="directory holding the ONNX files"
    )
    detector: str | None = Field(
        None, description="detector file, relative to models_dir; found by content when unset"
    )
    recognizer: str | None = Field(
        None, description="recognizer file, relative to models_dir; found by content when unset"
    )


class FacenetSettings(BaseModel):
    """The `facenet` pack: facenet-pytorch's MTCNN + InceptionResnetV1."""

    weights: Path | None = Field(
        None,
        description="InceptionResnetV1 state dict file; default: facenet-pytorch's cache"
        " $TORCH_HOME/checkpoints/<the file of `pretrained`>",
    )
    pretrained: Literal["vggface2", "casia-webface"] = Field(
        "vggface2",
        description="which released weights (the weights file holds them); casia-webface"
        " names the pack facenet-casia-webface",
    )


class StorageSettings(BaseModel):
    """Where the catalog and the vectors live."""

    catalog_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file catalog.sqlite in home"
    )
    milvus_uri: str | None = Field(
        None, description="Milvus URI (http://host:19530) or Lite file; default: vectors.db in home"
    )
    milvus_token: SecretStr | None = Field(None, description="Milvus server token, if any")
    metric: Metric | None = Field(
        None,
        description="distance of new collections; default: the embedder's own (cosine for"
        " ArcFace-style models, l2 for FaceNet and dlib)",
    )
    exact_search: bool = Field(
        True,
        description="search an embedded (Milvus Lite) home exactly, in process, over the"
        " catalog's vectors while they fit `exact_max_mb`: recall 1.0, faster than Lite's"
        " index at every size measured, and current right after a write by any process",
    )
    exact_max_mb: int = Field(
        2048,
        ge=0,
        description="memory a pack's vectors may take for exact in-process search (4 bytes a"
        " dimension: 2048 MB holds ~1M 512-d or ~4M 128-d faces); past it Milvus answers",
    )
    index_type: IndexType = Field(
        "HNSW",
        description="Milvus index. HNSW by default; on Milvus Lite each query still costs"
        " ~0.7 µs per stored face in Python (~90 ms at 100k), so past ~1M faces use a"
        " Milvus server URI",
    )
    # Index build and search parameters. Face embeddings (128-512 d, unit length)
    # form tight clusters per person, so modest graphs and list counts find a
    # person's other faces; the defaults favour recall over the last millisecond.
    hnsw_m: int = Field(
        16,
        ge=2,
        le=2048,
        description="HNSW: links per node. 16 suits 128-512 d face vectors; 32 buys a little"
        " recall for twice the graph's memory",
    )
    hnsw_ef_construction: int = Field(
        200,
        ge=8,
        le=4096,
        description="HNSW: candidates while building; 200 gives a near-exact graph, build time"
        " grows linearly with it",
    )
    hnsw_ef: int = Field(
        128,
        ge=1,
        le=32768,
        description="HNSW: candidates per search (raised to top_k when smaller, as Milvus"
        " requires); 128 is ~10x the usual top_k, near-exact for top-10",
    )
    ivf_nlist: int = Field(
        1024,
        ge=1,
        le=65536,
        description="IVF_FLAT / IVF_SQ8 / IVF_PQ: clusters the vectors are split into; about"
        " 4·√N (1024 for ~100k faces, 4096 past ~1M). Milvus indexes only segments of ≥ 1024"
        " rows; smaller ones are searched exactly",
    )
    ivf_nprobe: int = Field(
        32,
        ge=1,
        le=65536,
        description="IVF: clusters searched per query (≤ ivf_nlist); 32 of 1024 (3 %) since a"
        " person's faces sit in few clusters; raise it when rare matches go missing",
    )
    pq_m: int | None = Field(
        None,
        ge=1,
        description="IVF_PQ: sub-quantizers; must divide the embedding's dimension. Default:"
        " one per 8 dimensions (64 for 512-d, 16 for 128-d): with 8-bit codes that stores"
        " 1 byte per 8 floats (32x less) and keeps face similarities usable; fewer"
        " sub-quantizers blur them",
    )
    pq_nbits: int = Field(
        8, ge=1, le=16, description="IVF_PQ: bits per sub-quantizer code (256 centroids at 8)"
    )
    milvus_db: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Milvus database on a server (created if missing), so several workbenches"
        " or test runs share one server without seeing each other's collections; default:"
        " Milvus's `default`. Milvus Lite has a single database: leave it unset there",
    )
    milvus_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Strong",
        description="consistency of searches and counts on a Milvus server. Strong (default):"
        " a search right after an ingest, delete or reindex sees it, as a workbench user"
        " expects; Bounded (Milvus's own default) can miss the last few seconds of writes"
        " but waits less under heavy concurrent ingest",
    )

    lite_idle_s: float = Field(
        30.0,
        ge=0.0,
        description="a Lite file is served to every process of the home by one server"
        " process; it stops this many seconds after the last process using it has gone",
    )
    wait_s: float = Field(
        60.0,
        gt=0.0,
        description="how long a process waits for the vectors (their server starting, or"
        " another process starting it) before it says what holds them",
    )

    @field_validator("ivf_nprobe", mode="after")
    @classmethod
    def _nprobe_within_nlist(cls, v: int, info: object) -> int:
        nlist = getattr(info, "data", {}).get("ivf_nlist")
        if nlist is not None and v > nlist:
            raise ValueError(
                f"ivf_nprobe {v} is larger than ivf_nlist {nlist}: a query cannot search more"
                " clusters than there are; lower WORKBENCH_STORAGE__IVF_NPROBE"
            )
        return v


class QualitySettings(BaseModel):
    """The quality gate: faces below it stay in the catalog and the gallery, marked with
    their reasons, but are left out of search answers and clustering unless asked for.

    The defaults are where recognition stops working with the `local` pack on LFW
    (``evaluation/quality_gate.py``): a same-person match at 85 % is found for 2 in 3
    faces 24 px wide but under 1 in 3 at 20 px, for 72 % of faces blurred to sharpness
    0.18 but 20 % at 0.11, for 70 % of pairs turned 45–60° but 31 % past 60°.
    """

    enabled: bool = Field(True, description="apply the gate (false: every face is searchable)")
    min_size: float = Field(
        24.0, ge=0.0, description="shorter side of the face box, in pixels of the photo"
    )
    min_score: float = Field(
        0.0, ge=0.0, le=1.0, description="detector confidence (beyond the detection's own)"
    )
    min_sharpness: float = Field(
        0.12, ge=0.0, description="contrast-normalised Laplacian spread of the face crop"
    )
    max_yaw: float = Field(60.0, ge=0.0, le=90.0, description="head turn, degrees (estimated)")
    max_pitch: float = Field(45.0, ge=0.0, le=90.0, description="head nod, degrees (estimated)")


class SearchSettings(BaseModel):
    top_k: int = Field(10, ge=1, le=16384)
    page_size: int = Field(
        24, ge=1, le=1000, description="match tiles per face on one page of the search app"
    )
    threshold: float = Field(
        85.0,
        ge=0.0,
        le=100.0,
        description="similarity % of a match; 85 lets through one stranger in 100,000 faces"
        " searched (each 5 points between 70 and 95 % a factor of ten)",
    )

    def resolve_threshold(self, threshold: float | None) -> float:
        """The similarity % a search uses: ``threshold`` when given, else the default."""
        return self.threshold if threshold is None else threshold


class RemoteSettings(BaseModel):
    """Downloads from Yandex.Disk and VK: how many at a time, how failures are retried."""

    downloads: int = Field(4, ge=1, le=32, description="photos downloaded at a time")
    retries: int = Field(
        5, ge=0, le=20, description="retries of a request that failed with 429, 5xx or a time-out"
    )
    backoff: float = Field(
        1.0,
        ge=0.0,
        description="first retry delay, seconds; doubles per retry (with jitter), at most 60 s,"
        " or what the server's Retry-After asks",
    )
    timeout: float = Field(30.0, gt=0, description="connect and read time-out per request, seconds")
    vk_api_version: str = Field("5.199", description="VK API version requested")
    vk_page_size: int = Field(1000, ge=1, le=1000, description="photos per photos.get call")
    vk_requests_per_second: float = Field(
        3.0, gt=0, le=20, description="VK allows a user token 3 API calls per second"
    )
    yadisk_page_size: int = Field(200, ge=1, le=1000, description="folder items per listing call")
    # The services' API roots; tests point them at a local server speaking the same protocol.
    vk_api_url: str = "https://api.vk.ru"
    yadisk_api_url: str = "https://cloud-api.yandex.net"


class QueueSettings(BaseModel):
    """Distributed processing: `workbench enqueue` publishes photo jobs, `workbench worker`
    consumes them (FastStream over a Redis stream with a consumer group)."""

    url: str = Field("redis://127.0.0.1:6379/0", description="broker URL (redis://)")
    stream: str = Field("workbench:photos", description="the Redis stream of photo jobs")
    group: str = Field("workbench-workers", description="the workers' consumer group")
    batch: int = Field(16, ge=1, le=1000, description="jobs a worker takes (and analyses) at once")
    reclaim_after: float = Field(
        120.0,
        gt=0,
        description="seconds a job may stay unacknowledged before another worker takes it over"
        " (its worker died); longer than a batch ever takes, or live work is done twice",
    )
    max_deliveries: int = Field(
        3,
        ge=1,
        le=100,
        description="deliveries of one photo job before it is recorded as an error (a poison"
        " photo that kills its worker each time) instead of tried again",
    )


class ApiSettings(BaseModel):
    """The HTTP API (`workbench serve-api`; ``WORKBENCH_API__*``)."""

    host: str = Field("127.0.0.1", description="address to bind (anything else faces the network)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    roots: list[Path] = Field(
        default_factory=list,
        description="folders whose files and archives `POST /v1/ingest` may name (none: no "
        "paths, only uploads and remote sources)",
    )
    max_upload_bytes: int = Field(
        25 * 2**20, ge=1, description="largest uploaded photo (search sample or ingest file)"
    )
    max_upload_files: int = Field(200, ge=1, description="most files in one ingest upload")
    max_upload_pixels: int = Field(
        50_000_000, ge=1, description="largest width × height of an uploaded photo"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins a browser may call the API from (none: off)"
    )
    jobs: Literal["process", "broker"] = Field(
        "process",
        description="where ingest jobs run: in the API's process, or published to the broker "
        "(`queue.url`) for `workbench worker`s",
    )
    page_size: int = Field(50, ge=1, le=1000, description="default items per page of a list")


class WorkbenchSettings(BaseSettings):
    """All settings of one workbench.

    Defaults make a workbench that runs with nothing else installed: a SQLite
    catalog and a Milvus Lite file in ``home``.
    """

    model_config = SettingsConfigDict(
        env_prefix="WORKBENCH_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(Path("workbench-data"), description="directory of the catalog and vectors")
    pack: str = Field(
        "local",
        description="model pack name, a directory of ONNX models, or <detector>+<embedder>",
    )
    detector: str | None = Field(
        None,
        description="replace the pack's detector: scrfd, yunet, mtcnn, dlib-hog or an ONNX path",
    )
    embedder: str | None = Field(
        None,
        description="replace the pack's embedder: facenet, dlib, a recognizer of the local"
        " models dir by file name (mobilefacenet) or an ONNX path",
    )
    device: Device = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads per model session; default: all cores when alone,"
        " fewer when Milvus Lite shares the process",
    )
    batch_size: int = Field(16, ge=1, description="photos decoded and analysed per batch")
    insightface_root: Path = Field(
        Path("~/.insightface"), description="root of insightface model packs (models/<name>/)"
    )
    allow_download: bool = Field(
        True, description="let insightface download missing packs (needs internet)"
    )
    vk_token: SecretStr | None = Field(
        None, description="VK user access token with the photos scope (WORKBENCH_VK_TOKEN)"
    )
    yadisk_token: SecretStr | None = Field(
        None, description="Yandex.Disk OAuth token for a private disk (WORKBENCH_YADISK_TOKEN)"
    )
    detection: DetectionSettings = DetectionSettings()
    remote: RemoteSettings = RemoteSettings()
    limits: LimitSettings = LimitSettings()
    local: LocalPackSettings = LocalPackSettings()
    facenet: FacenetSettings = FacenetSettings()
    storage: StorageSettings = StorageSettings()
    search: SearchSettings = SearchSettings()
    quality: QualitySettings = QualitySettings()
    queue: QueueSettings = QueueSettings()
    api: ApiSettings = ApiSettings()

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def catalog_url(self) -> str:
        return self.storage.catalog_url or f"sqlite:///{(self.home / 'catalog.sqlite').resolve()}"

    @property
    def milvus_uri(self) -> str:
        return self.storage.milvus_uri or str((self.home / "vectors.db").resolve())


def home_file_mode(home: Path) -> int:
    """Permission bits for the files a home writes beside its catalog (thumbnails, caches):
    the catalog's own, so that a home its owner made private stays private, else what
    the process's umask gives a new file."""
    try:
        return (home / "catalog.sqlite").stat().st_mode & 0o666
    except OSError:
        return 0o666 & ~_umask()


def make_home_dirs(folder: Path, home: Path) -> None:
    """Create ``folder`` (and its missing parents) inside ``home`` with the catalog's
    permission bits, searchable where readable (a private catalog: private folders)."""
    if folder.is_dir():
        return
    mode = home_file_mode(home)
    missing = [folder, *(p for p in folder.parents if not p.exists())]
    folder.mkdir(parents=True, exist_ok=True)
    for made in missing:
        if made.is_relative_to(home) and made != home:
            with contextlib.suppress(OSError):  # another process made it first, its own way
                made.chmod(mode | (mode & 0o444) >> 2)


def _umask() -> int:
    # Read, not set: os.umask() changes it for every thread while it is being read.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
