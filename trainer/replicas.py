"""Training on every GPU of one machine: the strategy, and the sums a replica needs of all the others.

With more than one visible GPU both stages train under `tf.distribute.MirroredStrategy`: one copy of
every variable per GPU, kept equal by all-reducing the gradients. With one GPU, or none, training keeps
the default strategy, so nothing changes there (no copies, no all-reduce, the same speed).

What a step means does not depend on the number of replicas:

- `batchSize` is the global batch: each step takes `batchSize` examples, split among the replicas, and
  the learning rate is used as configured (not scaled). A run keeps its optimisation when only `gpus`
  changes, and a checkpoint resumes on another replica count with the same step sequence.
- each replica weighs its loss by its share of the global batch (`replica_share`), so the summed
  gradients are those of the global batch's mean loss, and step metrics are global means;
- the EMA codebook sees the whole global batch: `sum_over_replicas` all-reduces its statistics inside
  the step, every replica computes the same update, and only the first replica's copy is written.

Several machines (MultiWorkerMirroredStrategy) are not supported: a run uses the GPUs of one pod.

`ARGOMLOPS_CPU_REPLICAS=N` (a test aid) splits the CPU into N logical devices and trains on them under
the same strategy, so the multi-replica path can be tested on a machine without GPUs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import tensorflow as tf

CPU_REPLICAS_ENV = "ARGOMLOPS_CPU_REPLICAS"


def _cpu_replicas() -> int:
    """The logical CPU devices `ARGOMLOPS_CPU_REPLICAS` asks for (1 when unset)."""
    value = os.environ.get(CPU_REPLICAS_ENV, "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CPU_REPLICAS_ENV} must be a positive integer, got {value!r}")
    return int(value)


@functools.cache
def training_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs when there are several, else the default strategy.

    Must be called before TensorFlow initialises its devices when `ARGOMLOPS_CPU_REPLICAS` is set.
    """
    cpus = _cpu_replicas()
    if cpus > 1:
        physical = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(physical, [tf.config.LogicalDeviceConfiguration()] * cpus)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()


def _replica_context() -> tf.distribute.ReplicaContext | None:
    """The replica context of a step that runs on several replicas, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def sum_over_replicas(value: Any) -> Any:
    """`value` summed over the replicas of the running step (itself outside a multi-replica step)."""
    context = _replica_context()
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_global_rows(local: Any, picks: Any) -> Any:
    """Rows `picks` of the global batch's rows (every replica's `local`, concatenated in replica order).

    Each replica contributes the picked rows it holds and zeros elsewhere; one all-reduce of the small
    result gives every replica the same rows, without gathering the whole batch anywhere.
    """
    context = _replica_context()
    if context is None:
        return tf.gather(local, picks)
    count = tf.shape(local)[0]
    counts = context.all_gather(tf.reshape(count, [1]), axis=0)  # (R,), in replica order
    before = tf.range(context.num_replicas_in_sync) < context.replica_id_in_sync_group
    rows = picks - tf.reduce_sum(tf.where(before, counts, 0))
    held = tf.logical_and(rows >= 0, rows < count)
    picked = tf.gather(local, tf.clip_by_value(rows, 0, count - 1))
    return context.all_reduce(tf.distribute.ReduceOp.SUM, picked * tf.cast(held, local.dtype)[:, tf.newaxis])


def replica_share(batch: Any) -> Any:
    """This replica's share of the global batch's examples, or None outside a multi-replica step."""
    if _replica_context() is None:
        return None
    local = tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)
    return local / sum_over_replicas(local)
