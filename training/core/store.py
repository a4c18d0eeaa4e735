"""The zoo store in one import: the public names of the modules that alone touch a zoo's files.

``from training.core import store`` gives :class:`Zoo`, shard and manifest I/O, atomic writes and
the integrity digests; the modules behind it are ``files`` (atomic writes, JSON), ``integrity``
(digests, checked reads), ``shards``, ``manifest`` (and probe sets), ``schema`` (result and cache
structure) and ``zoo``. Schema: ``docs/zoo-format.md``.
"""

from training.core.files import (
           atomic_path,
           clean_orphans,
           clean_zoo_orphans,
           package_version,
           publish_mode,
           read_json,
           staging_dir,
           write_json,
)
from training.core.integrity import (
           CHECKSUM,
           CHECKSUMS,
           FINGERPRINT_FORMAT,
           MANIFEST,
           SCHEMA_VERSION,
           SHARD_FORMAT,
           digest_all,
           row_digests,
           step_key,
)
from training.core.manifest import (
           DATA,
           PROBES,
           check_manifest,
           completed_shards,
           read_data,
           read_manifest,
           read_probes,
           write_data,
           write_manifest,
           write_probes,
)
from training.core.schema import RESULT_SCHEMAS, model_set_hash
from training.core.shards import CORE_COLUMNS, ModelTable, Shard, ShardData, write_shard
from training.core.zoo import Zoo

__all__ = ["CHECKSUM", "CHECKSUMS", "CORE_COLUMNS", "DATA", "FINGERPRINT_FORMAT", "MANIFEST", "PROBES", "RESULT_SCHEMAS", "SCHEMA_VERSION",
           "SHARD_FORMAT", "ModelTable", "Shard", "ShardData", "Zoo", "atomic_path", "check_manifest", "clean_orphans",
           "clean_zoo_orphans", "completed_shards", "digest_all", "model_set_hash", "package_version", "publish_mode",
           "read_data", "read_json", "read_manifest", "read_probes", "row_digests", "staging_dir", "step_key", "write_data", "write_json",
           "write_manifest", "write_probes", "write_shard"]
