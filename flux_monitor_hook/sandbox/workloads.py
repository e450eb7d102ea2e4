"""Simulated rollouts of Deployments, StatefulSets and DaemonSets (the kubelet and workload controllers).

A new generation finishes rolling out after a delay (default 2 s, scaled by --speed), or never with the
annotation `sandbox.flux-monitor.io/rollout: never`; `sandbox.flux-monitor.io/rollout-seconds` sets the
delay per object. A rollout that never finishes passes progressDeadlineSeconds as ProgressDeadlineExceeded.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.runtime import marker

Obj = dict[str, Any]
DEFAULT_ROLLOUT_SECONDS = 2.0


class RolloutController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # (kind, namespace, name) -> (generation, monotonic time the rollout finishes, or None for never)
        self._rollouts: dict[tuple[str, str, str], tuple[int, float | None, float]] = {}

    def reconcile(self, kind: str, namespace: str, name: str) -> None:
        rt = self.rt
        key = (kind, namespace, name)
        obj = rt.get(kind, namespace, name)
        if obj is None:
            self._rollouts.pop(key, None)
            return
        generation = obj['metadata'].get('generation', 1)
        now = time.monotonic()
        known = self._rollouts.get(key)
        status = obj.get('status') or {}
        if known is None and status.get('observedGeneration') == generation:
            self._rollouts[key] = (generation, now, now)  # already rolled out (set up by bootstrap)
            return
        if known is None or known[0] != generation:
            finish = self._finish_time(obj, now)
            deadline = now + rt.clock.scale(float((obj.get('spec') or {}).get('progressDeadlineSeconds', 600)))
            self._rollouts[key] = (generation, finish, deadline)
            self._write(obj, done=False)
            next_check = finish if finish is not None else deadline
            rt.scheduler.enqueue((kind, namespace, name), max(0.0, next_check - now))
            return
        _, finish, deadline = known
        if finish is not None and now >= finish:
            self._write(obj, done=True)
        elif finish is None and now >= deadline:
            self._write(obj, done=False, deadline_exceeded=True)
        else:
            next_check = finish if finish is not None else deadline
            rt.scheduler.enqueue((kind, namespace, name), max(0.0, next_check - now))

    def _finish_time(self, obj: Obj, now: float) -> float | None:
        if marker(obj, 'rollout') == 'never':
            return None
        try:
            seconds = float(marker(obj, 'rollout-seconds') or DEFAULT_ROLLOUT_SECONDS)
        except ValueError:
            seconds = DEFAULT_ROLLOUT_SECONDS
        return now + self.rt.clock.scale(seconds)

    def _write(self, obj: Obj, *, done: bool, deadline_exceeded: bool = False) -> None:
        kind = obj['kind']
        name = obj['metadata']['name']
        replicas = (obj.get('spec') or {}).get('replicas', 1)
        status = obj.setdefault('status', {})
        status['observedGeneration'] = obj['metadata'].get('generation', 1)
        ready = replicas if done else 0
        if kind == 'DaemonSet':
            status.update(desiredNumberScheduled=1, currentNumberScheduled=1, updatedNumberScheduled=1,
                          numberReady=1 if done else 0, numberAvailable=1 if done else 0,
                          numberMisscheduled=0)
        else:
            status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=ready,
                          availableReplicas=ready)
            if kind == 'StatefulSet':
                status.update(currentReplicas=replicas)
        if not done:
            status['unavailableReplicas'] = replicas
        else:
            status.pop('unavailableReplicas', None)
        if kind == 'Deployment':
            template_hash = hashlib.sha256(f'{name}/{status["observedGeneration"]}'.encode()).hexdigest()[:10]
            replica_set = f'{name}-{template_hash}'
            if done:
                conditions.set_condition(obj, 'Available', 'True', 'MinimumReplicasAvailable',
                                         'Deployment has minimum availability.')
                conditions.set_condition(obj, 'Progressing', 'True', 'NewReplicaSetAvailable',
                                         f'ReplicaSet "{replica_set}" has successfully progressed.')
            elif deadline_exceeded:
                conditions.set_condition(obj, 'Progressing', 'False', 'ProgressDeadlineExceeded',
                                         f'ReplicaSet "{replica_set}" has timed out progressing.')
            else:
                conditions.set_condition(obj, 'Available', 'False', 'MinimumReplicasUnavailable',
                                         'Deployment does not have minimum availability.')
                conditions.set_condition(obj, 'Progressing', 'True', 'ReplicaSetUpdated',
                                         f'ReplicaSet "{replica_set}" is progressing.')
            for condition in status.get('conditions') or []:
                condition.pop('observedGeneration', None)  # Deployment conditions carry no observedGeneration
                condition.setdefault('lastUpdateTime', condition['lastTransitionTime'])
        self.rt.write_status(obj)
