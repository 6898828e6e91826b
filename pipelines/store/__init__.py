"""Stage output directories: chained fingerprints, atomic writes, manifests, resumable Arrow shards.

An output directory is a contract: it exists only once it is complete (it is built in a work directory beside
the target and renamed into place, `manifest.json` written last), and its manifest's fingerprint says exactly
which inputs and settings made it. A stage whose output already carries the fingerprint it would compute is
skipped. Fingerprints hash declared data (canonical JSON of configs, file hashes), never live Python objects.

The data is written by `datasets` itself (`Dataset.save_to_disk`, and `ArrowWriter` for the shards of a
resumable stage), so `datasets.load_from_disk(dir)` memory-maps it and plain pyarrow reads its Arrow files; the
same rows give the same bytes.

One job a module: `fingerprints` (hashes of configs and files, the versions that change results), `stage_dirs`
(manifests, the lock, crash-safe commit and replacement, stale work), `temp_files` (temporary and lock files
that a planted link cannot redirect), `schemas` (the transfer and scored sets,
declared once) and `arrow_io` (datasets directories and resumable shards). Callers use the names below as
`store.X`, whichever module holds them.
"""

from __future__ import annotations

from .arrow_io import (SHARDS, STATE, PartWriter, assemble_shards, dataset_files, read_arrow_file, read_table,
                       save_dataset, shard_fingerprint, shard_name, shard_problem, write_dataset, write_shard)
from .fingerprints import (RESULT_PACKAGES, canonical_json, fingerprint, hash_file, hash_files, hash_path,
                           result_versions)
from .schemas import scored_schema, transfer_schema
from .stage_dirs import (MANIFEST, PARTIAL_MARKER, STAGE_NAMES, STATS, TOOL, StageRun, aside_path, check_replaceable,
                         is_complete, is_own_work, lock_path, other_work, output_lock, output_of, package_versions,
                         read_manifest, recover_replaced, replace_dir, require_stage_output, size_of, stage_run,
                         work_dir_for, write_json)
from .temp_files import open_lock_file, replacing, temp_beside

__all__ = [
    "MANIFEST", "PARTIAL_MARKER", "RESULT_PACKAGES", "SHARDS", "STAGE_NAMES", "STATE", "STATS", "TOOL",
    "PartWriter", "StageRun", "aside_path", "assemble_shards", "canonical_json", "check_replaceable",
    "dataset_files", "fingerprint", "hash_file", "hash_files", "hash_path", "is_complete", "is_own_work",
    "lock_path", "open_lock_file", "other_work", "output_lock", "output_of", "package_versions", "read_arrow_file",
    "read_manifest", "read_table", "recover_replaced", "replace_dir", "replacing", "require_stage_output",
    "result_versions", "save_dataset", "scored_schema", "shard_fingerprint", "shard_name", "shard_problem",
    "size_of", "stage_run", "temp_beside", "transfer_schema", "work_dir_for", "write_dataset", "write_json",
    "write_shard",
]
