"""The measurement store: one SQLite file (standard library), safe to share.

Tables: ``devices`` (facts the agent reported), ``models`` (content hash, source,
graph summary, the kernel list), ``campaigns`` (a profiling run and its settings),
``measurements`` (stats + provenance + per-kernel times: ORT per-node, LiteRT op slices).  Every write is a
transaction; a campaign's items are unique per campaign, so a killed campaign loses
nothing it had stored and a resumed one never stores an item twice.  WAL mode and a
busy timeout let several campaigns (threads or processes) write to one store.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import StoreError
from .records import SCHEMA_VERSION, LatencyStats, Measurement, ModelGraph, Target

STORE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    facts_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    hash TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    family TEXT,
    spec_json TEXT,
    n_kernels INTEGER NOT NULL,
    flops INTEGER NOT NULL,
    params INTEGER NOT NULL,
    graph_blob BLOB NOT NULL,
    artifact_path TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target_key TEXT NOT NULL,
    seed INTEGER NOT NULL,
    settings_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_hash TEXT NOT NULL REFERENCES models(hash),
    target_key TEXT NOT NULL,
    device TEXT NOT NULL,
    runtime TEXT NOT NULL,
    threads INTEGER NOT NULL,
    precision TEXT NOT NULL,
    batch INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error_kind TEXT,
    error_message TEXT,
    n INTEGER, median_ms REAL, p10_ms REAL, p90_ms REAL, mean_ms REAL, std_ms REAL,
    min_ms REAL, max_ms REAL, p95_ms REAL, p99_ms REAL,
    init_ms REAL, first_inference_ms REAL,
    runtime_version TEXT, agent_version TEXT,
    measured_at TEXT NOT NULL,
    campaign_id INTEGER REFERENCES campaigns(id),
    campaign_item TEXT,
    seconds_spent REAL,
    warnings_json TEXT NOT NULL DEFAULT '[]',
    provenance_json TEXT NOT NULL DEFAULT '{}',
    node_profile_blob BLOB,
    optimized_nodes_blob BLOB,
    schema_version INTEGER NOT NULL,
    UNIQUE (campaign_id, campaign_item)
);
CREATE TABLE IF NOT EXISTS views (
    hash TEXT NOT NULL REFERENCES models(hash),
    view TEXT NOT NULL,
    graph_blob BLOB NOT NULL,
    PRIMARY KEY (hash, view)
);
CREATE INDEX IF NOT EXISTS measurements_target ON measurements(target_key, status);
CREATE INDEX IF NOT EXISTS measurements_model ON measurements(model_hash);
"""

# Columns exported by `edgecost store export` (flat, analysis-friendly).
EXPORT_COLUMNS = (
    "id", "model_hash", "family", "source", "n_kernels", "flops", "params",
    "target_key", "device", "runtime", "threads", "precision", "batch", "status",
    "error_kind", "error_message", "n", "median_ms", "p10_ms", "p90_ms", "mean_ms",
    "std_ms", "min_ms", "max_ms", "p95_ms", "p99_ms", "init_ms", "first_inference_ms",
    "runtime_version", "agent_version", "measured_at", "campaign_id", "campaign_item",
    "seconds_spent",
)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _pack(obj: Any) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 6)


def _unpack(blob: bytes | None) -> Any:
    if blob is None:
        return None
    return json.loads(zlib.decompress(blob))


@dataclass(frozen=True)
class StoredModel:
    hash: str
    format: str
    source: str
    family: str | None
    spec: dict[str, Any] | None
    n_kernels: int
    flops: int
    params: int
    artifact_path: str | None

    def graph(self, store: "Store") -> ModelGraph:
        return store.model_graph(self.hash)


@dataclass(frozen=True)
class StoredMeasurement:
    id: int
    model_hash: str
    target: Target
    status: str
    median_ms: float | None
    measurement: Measurement | None  # None when status == 'failed'
    error_kind: str | None
    error_message: str | None
    campaign_id: int | None
    campaign_item: str | None
    seconds_spent: float | None


class Store:
    """A connection per thread to one SQLite file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else paths.store_path()
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            with conn:
                conn.executescript(_SCHEMA)
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(STORE_SCHEMA_VERSION),))
                elif int(row[0]) > STORE_SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.path} was written by a newer edgecost (schema {row[0]})",
                        "upgrade edgecost, or point EDGECOST_HOME elsewhere",
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the measurement store {self.path}: {exc}",
                "check the file, or set EDGECOST_HOME to a fresh directory",
            ) from exc
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.path}: {exc}",
                             "set EDGECOST_HOME to a writable directory") from exc

    # -- connections ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _write(self) -> "_Transaction":
        return _Transaction(self._conn(), self.path)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- devices -------------------------------------------------------------

    def put_device_facts(self, name: str, facts: dict[str, Any]) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO devices(name, facts_json, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET facts_json=excluded.facts_json, updated_at=excluded.updated_at",
                (name, json.dumps(facts), utc_now()),
            )

    def device_facts(self, name: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT facts_json FROM devices WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- models --------------------------------------------------------------

    def put_model(
        self,
        graph: ModelGraph,
        *,
        family: str | None = None,
        spec: dict[str, Any] | None = None,
        artifact_path: str | None = None,
    ) -> None:
        """Store a model once (by content hash); later calls only fill missing fields."""
        with self._write() as c:
            c.execute(
                "INSERT INTO models(hash, format, source, family, spec_json, n_kernels, flops, params,"
                " graph_blob, artifact_path, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(hash) DO UPDATE SET "
                " family=COALESCE(models.family, excluded.family),"
                " spec_json=COALESCE(models.spec_json, excluded.spec_json),"
                " artifact_path=COALESCE(excluded.artifact_path, models.artifact_path)",
                (
                    graph.content_hash, graph.format, graph.source, family,
                    json.dumps(spec) if spec is not None else None,
                    len(graph.kernels), graph.flops, graph.params,
                    _pack(graph.to_dict()), artifact_path, utc_now(),
                ),
            )

    def has_model(self, model_hash: str) -> bool:
        return self._conn().execute("SELECT 1 FROM models WHERE hash=?", (model_hash,)).fetchone() is not None

    def model(self, model_hash: str) -> StoredModel | None:
        row = self._conn().execute("SELECT * FROM models WHERE hash=?", (model_hash,)).fetchone()
        return self._model_from_row(row) if row else None

    def models(self) -> list[StoredModel]:
        return [self._model_from_row(r) for r in self._conn().execute("SELECT * FROM models ORDER BY created_at")]

    def model_graph(self, model_hash: str) -> ModelGraph:
        row = self._conn().execute("SELECT graph_blob FROM models WHERE hash=?", (model_hash,)).fetchone()
        if row is None:
            raise StoreError(f"no model {model_hash[:12]} in the store", "measure it first")
        return ModelGraph.from_dict(_unpack(row[0]))

    def put_view(self, model_hash: str, view: str, graph: ModelGraph) -> None:
        """Cache a derived graph of a model (e.g. the kernels ORT executes at one level)."""
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO views(hash, view, graph_blob) VALUES (?,?,?)",
                      (model_hash, view, _pack(graph.to_dict())))

    def view(self, model_hash: str, view: str) -> ModelGraph | None:
        row = self._conn().execute("SELECT graph_blob FROM views WHERE hash=? AND view=?",
                                   (model_hash, view)).fetchone()
        return ModelGraph.from_dict(_unpack(row[0])) if row else None

    def view_names(self, model_hash: str) -> list[str]:
        """The names of the derived graphs kept for a model."""
        rows = self._conn().execute("SELECT view FROM views WHERE hash=? ORDER BY view", (model_hash,)).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _model_from_row(row: sqlite3.Row) -> StoredModel:
        return StoredModel(
            hash=row["hash"], format=row["format"], source=row["source"], family=row["family"],
            spec=json.loads(row["spec_json"]) if row["spec_json"] else None,
            n_kernels=row["n_kernels"], flops=row["flops"], params=row["params"],
            artifact_path=row["artifact_path"],
        )

    # -- campaigns -----------------------------------------------------------

    def create_campaign(self, target: Target, seed: int, settings: dict[str, Any]) -> int:
        now = utc_now()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO campaigns(target_key, seed, settings_json, status, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?)",
                (target.key, seed, json.dumps(settings), "running", now, now),
            )
            return int(cur.lastrowid)

    def latest_campaign(self, target: Target) -> dict[str, Any] | None:
        row = self._conn().execute(
            "SELECT * FROM campaigns WHERE target_key=? ORDER BY id DESC LIMIT 1", (target.key,)
        ).fetchone()
        return self._campaign_from_row(row) if row else None

    def campaign(self, campaign_id: int) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
        return self._campaign_from_row(row) if row else None

    def campaigns(self) -> list[dict[str, Any]]:
        return [self._campaign_from_row(r) for r in self._conn().execute("SELECT * FROM campaigns ORDER BY id")]

    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        with self._write() as c:
            c.execute("UPDATE campaigns SET status=?, updated_at=? WHERE id=?", (status, utc_now(), campaign_id))

    def campaign_items_done(self, campaign_id: int) -> set[str]:
        rows = self._conn().execute(
            "SELECT campaign_item FROM measurements WHERE campaign_id=?", (campaign_id,)
        ).fetchall()
        return {r[0] for r in rows}

    def _campaign_from_row(self, row: sqlite3.Row) -> dict[str, Any]:
        counts = self._conn().execute(
            "SELECT status, COUNT(*), COALESCE(SUM(seconds_spent), 0) FROM measurements"
            " WHERE campaign_id=? GROUP BY status",
            (row["id"],),
        ).fetchall()
        by_status = {r[0]: r[1] for r in counts}
        return {
            "id": row["id"],
            "target_key": row["target_key"],
            "seed": row["seed"],
            "settings": json.loads(row["settings_json"]),
            "status": row["status"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "measured_ok": by_status.get("ok", 0),
            "measured_failed": by_status.get("failed", 0),
            "device_seconds": float(sum(r[2] for r in counts)),
        }

    # -- measurements --------------------------------------------------------

    def add_measurement(
        self,
        m: Measurement,
        *,
        campaign_id: int | None = None,
        campaign_item: str | None = None,
        seconds_spent: float | None = None,
    ) -> int | None:
        """Store a successful measurement. Returns its id, or None if the campaign item was already stored."""
        s = m.stats
        t = m.target
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO measurements(model_hash, target_key, device, runtime, threads, precision,"
                " batch, status, n, median_ms, p10_ms, p90_ms, mean_ms, std_ms, min_ms, max_ms, p95_ms, p99_ms,"
                " init_ms, first_inference_ms, runtime_version, agent_version, measured_at, campaign_id,"
                " campaign_item, seconds_spent, warnings_json, provenance_json, node_profile_blob,"
                " optimized_nodes_blob, schema_version)"
                " VALUES (?,?,?,?,?,?,?,'ok',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    m.model_hash, t.key, t.device, t.runtime, t.threads, t.precision, t.batch,
                    s.n, s.median_ms, s.p10_ms, s.p90_ms, s.mean_ms, s.std_ms, s.min_ms, s.max_ms,
                    s.p95_ms, s.p99_ms, m.init_ms, m.first_inference_ms, m.runtime_version,
                    m.agent_version, m.measured_at, campaign_id, campaign_item, seconds_spent,
                    json.dumps(list(m.warnings)), json.dumps(m.provenance),
                    _pack(list(m.node_profile)) if m.node_profile else None,
                    _pack(list(m.optimized_nodes)) if m.optimized_nodes else None,
                    m.schema_version,
                ),
            )
            return int(cur.lastrowid) if cur.rowcount else None

    def add_failure(
        self,
        model_hash: str,
        target: Target,
        error_kind: str,
        error_message: str,
        *,
        campaign_id: int | None = None,
        campaign_item: str | None = None,
        seconds_spent: float | None = None,
        agent_version: str = "",
    ) -> int | None:
        """Record that a model failed on a target (crash, OOM, rejected op): the campaign goes on."""
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO measurements(model_hash, target_key, device, runtime, threads, precision,"
                " batch, status, error_kind, error_message, agent_version, measured_at, campaign_id,"
                " campaign_item, seconds_spent, schema_version)"
                " VALUES (?,?,?,?,?,?,?,'failed',?,?,?,?,?,?,?,?)",
                (
                    model_hash, target.key, target.device, target.runtime, target.threads,
                    target.precision, target.batch, error_kind, error_message[:2000], agent_version,
                    utc_now(), campaign_id, campaign_item, seconds_spent, SCHEMA_VERSION,
                ),
            )
            return int(cur.lastrowid) if cur.rowcount else None

    def measurements(
        self,
        target: Target | None = None,
        *,
        status: str | None = "ok",
        campaign_id: int | None = None,
        with_profiles: bool = True,
    ) -> list[StoredMeasurement]:
        sql = "SELECT * FROM measurements WHERE 1=1"
        args: list[Any] = []
        if target is not None:
            sql += " AND target_key=?"
            args.append(target.key)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        if campaign_id is not None:
            sql += " AND campaign_id=?"
            args.append(campaign_id)
        sql += " ORDER BY id"
        return [self._measurement_from_row(r, with_profiles) for r in self._conn().execute(sql, args)]

    def count_measurements(self, target: Target | None = None, status: str = "ok") -> int:
        if target is None:
            return self._conn().execute("SELECT COUNT(*) FROM measurements WHERE status=?", (status,)).fetchone()[0]
        return self._conn().execute(
            "SELECT COUNT(*) FROM measurements WHERE target_key=? AND status=?", (target.key, status)
        ).fetchone()[0]

    def targets(self) -> list[Target]:
        rows = self._conn().execute("SELECT DISTINCT target_key FROM measurements ORDER BY target_key")
        return [Target.from_key(r[0]) for r in rows]

    @staticmethod
    def _measurement_from_row(row: sqlite3.Row, with_profiles: bool) -> StoredMeasurement:
        target = Target.from_key(row["target_key"])
        meas = None
        if row["status"] == "ok":
            stats = LatencyStats(
                n=row["n"], median_ms=row["median_ms"], p10_ms=row["p10_ms"], p90_ms=row["p90_ms"],
                mean_ms=row["mean_ms"], std_ms=row["std_ms"], min_ms=row["min_ms"], max_ms=row["max_ms"],
                p95_ms=row["p95_ms"], p99_ms=row["p99_ms"],
            )
            meas = Measurement(
                model_hash=row["model_hash"], target=target, stats=stats,
                runtime_version=row["runtime_version"] or "", agent_version=row["agent_version"] or "",
                measured_at=row["measured_at"], init_ms=row["init_ms"],
                first_inference_ms=row["first_inference_ms"],
                warnings=tuple(json.loads(row["warnings_json"] or "[]")),
                provenance=json.loads(row["provenance_json"] or "{}"),
                node_profile=tuple(_unpack(row["node_profile_blob"]) or ()) if with_profiles else (),
                optimized_nodes=tuple(_unpack(row["optimized_nodes_blob"]) or ()) if with_profiles else (),
                schema_version=row["schema_version"],
            )
        return StoredMeasurement(
            id=row["id"], model_hash=row["model_hash"], target=target, status=row["status"],
            median_ms=row["median_ms"], measurement=meas, error_kind=row["error_kind"],
            error_message=row["error_message"], campaign_id=row["campaign_id"],
            campaign_item=row["campaign_item"], seconds_spent=row["seconds_spent"],
        )

    # -- export --------------------------------------------------------------

    def export_rows(self, target: Target | None = None) -> Iterator[dict[str, Any]]:
        sql = (
            "SELECT m.*, md.family AS family, md.source AS source, md.n_kernels AS n_kernels,"
            " md.flops AS flops, md.params AS params FROM measurements m"
            " JOIN models md ON md.hash = m.model_hash"
        )
        args: list[Any] = []
        if target is not None:
            sql += " WHERE m.target_key=?"
            args.append(target.key)
        sql += " ORDER BY m.id"
        for row in self._conn().execute(sql, args):
            yield {col: row[col] for col in EXPORT_COLUMNS}


class _Transaction:
    """``with store._write() as c:`` — BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"writing to the store {self.path} failed: {exc}",
                                 "check disk space and permissions; nothing was half-written") from exc
        return False


def export(store: Store, out_path: str | Path, fmt: str, target: Target | None = None) -> int:
    """Write the measurements as CSV or Parquet; returns the number of rows."""
    rows: Iterable[dict[str, Any]] = list(store.export_rows(target))
    out = Path(out_path)
    if fmt == "csv":
        import csv

        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(EXPORT_COLUMNS))
            writer.writeheader()
            for r in rows:
                writer.writerow(r)
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise StoreError("parquet export needs pyarrow", "pip install 'edgecost[parquet]' or use --format csv") from exc
        columns = {c: [r[c] for r in rows] for c in EXPORT_COLUMNS}
        pq.write_table(pa.table(columns), out)
    else:
        from .errors import UsageError

        raise UsageError(f"unknown export format {fmt!r}", "use --format csv or --format parquet")
    return len(rows)
