"""The Kubernetes Pod Security Standards' "restricted" profile, as a check of one pod spec.

The rules of https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.33): the
baseline's (no host namespaces, ports or paths, no privileged containers, only the baseline's
capabilities, AppArmor, SELinux, /proc mount, seccomp and sysctls within their allowed values) and
the restricted profile's on top (volume types, no privilege escalation, non-root, RuntimeDefault or
Localhost seccomp, every capability dropped and at most NET_BIND_SERVICE added). Kubernetes does
not write it as code a test could call, and no library checks it offline, so it is written out here.
`readOnlyRootFilesystem` is no rule of the standard; this project asks it of every container, with an
emptyDir wherever the program writes (`read_only_violations`).
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{kind}[{c.get('name', index)}]", c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for index, c in enumerate(pod.get(kind) or [])
    ]


def _baseline(security: dict[str, Any], where: str, problems: list[str]) -> None:
    """The baseline rules a pod-level or container-level security context must keep."""
    if (security.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{where}: windowsOptions.hostProcess")
    if security.get("privileged"):
        problems.append(f"{where}: privileged")
    seccomp = (security.get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"{where}: seccompProfile.type {seccomp}")
    apparmor = (security.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"{where}: appArmorProfile.type {apparmor}")
    selinux = security.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"{where}: seLinuxOptions {selinux}")
    if security.get("procMount") not in (None, "Default"):
        problems.append(f"{where}: procMount {security['procMount']}")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of the restricted profile a pod spec breaks, one line each (empty: it is admitted)."""
    problems: list[str] = []
    pod_security = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"pod: {field}")
    _baseline(pod_security, "pod", problems)
    for sysctl in pod_security.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl.get('name')}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    if pod_security.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    for where, container in _containers(pod):
        security = container.get("securityContext") or {}
        _baseline(security, where, problems)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']}")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is not True:
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if security.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile RuntimeDefault or Localhost (pod or container)")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        added = set(capabilities.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities added {sorted(added - {'NET_BIND_SERVICE'})}")
    return problems


def read_only_violations(pod: dict[str, Any], written: dict[str, list[str]]) -> list[str]:
    """Containers without a read-only root filesystem, and written folders not on an emptyDir.

    `written` maps a container name to the folders its program writes (its TMPDIR, HOME/.cache, ...).
    """
    problems: list[str] = []
    empty = {volume["name"] for volume in pod.get("volumes") or [] if "emptyDir" in volume}
    for where, container in _containers(pod):
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts") or [] if m["name"] in empty]
        for folder in written.get(container.get("name", ""), []):
            if not any(folder == mount or folder.startswith(mount + "/") for mount in mounts):
                problems.append(f"{where}: writes {folder}, which is on no emptyDir")
    return problems
