"""Derived messageIds: UUID v5 of namespace + salt + file key + line + row bytes; file keys from content."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

from segment_lite.importer import FILE_KEY_BYTES, ID_NAMESPACE, derive_message_id, open_source


def test_derived_ids_are_uuid5_of_the_documented_name() -> None:
    mid = derive_message_id("filekey", 42, b'{"a":1}', salt="s")
    assert mid == str(uuid.uuid5(ID_NAMESPACE, 's\x00filekey\x0042\x00{"a":1}'))
    assert uuid.UUID(mid).version == 5
    assert derive_message_id("filekey", 42, b'{"a":1}') != mid  # salt
    assert derive_message_id("other", 42, b'{"a":1}', salt="s") != mid  # file
    assert derive_message_id("filekey", 43, b'{"a":1}', salt="s") != mid  # line
    assert derive_message_id("filekey", 42, b'{"a":2}', salt="s") != mid  # content


def test_file_key_is_a_hash_of_the_decompressed_head(tmp_path: Path) -> None:
    body = b"".join(b'{"n": %d}\n' % i for i in range(20000))
    assert len(body) > FILE_KEY_BYTES
    (tmp_path / "a.jsonl").write_bytes(body)
    (tmp_path / "moved.jsonl").write_bytes(body)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "grown.jsonl").write_bytes(body + b'{"n": -1}\n')
    (tmp_path / "other.jsonl").write_bytes(b'{"n": 0}\n' + body)
    keys = {}
    for name in ("a.jsonl", "moved.jsonl", "a.jsonl.gz", "grown.jsonl", "other.jsonl"):
        source = open_source(str(tmp_path / name))
        keys[name] = source.key
        source.close()
    assert keys["a.jsonl"] == keys["moved.jsonl"] == keys["a.jsonl.gz"] == keys["grown.jsonl"]
    assert keys["other.jsonl"] != keys["a.jsonl"]
