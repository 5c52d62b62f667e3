"""Create the pipeline's topics from the manifests in ``schemas/topics``."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from schemas import topic_manifests


def ensure_topics(bootstrap: str, log=print) -> list[str]:  # type: ignore[no-untyped-def]
    """Create every manifest topic that does not exist yet; returns the names created.

    An existing topic with a different partition count is an error: Faust raises
    PartitionsMismatch later and keyed state would be spread wrongly.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    wanted = topic_manifests()
    problems = []
    for name, manifest in wanted.items():
        if name in existing and len(existing[name].partitions) != manifest.partitions:
            problems.append(
                f"topic {name} has {len(existing[name].partitions)} partitions, the manifest says "
                f"{manifest.partitions}: delete it or reset the data dir (tributary down --wipe)"
            )
    if problems:
        raise RuntimeError("; ".join(problems))
    new = [
        NewTopic(m.name, num_partitions=m.partitions, replication_factor=m.replication_factor, config=m.config)
        for name, m in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    for future in admin.create_topics(new, operation_timeout=30).values():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    log(f"created topics: {', '.join(t.topic for t in new)}")
    return [t.topic for t in new]
