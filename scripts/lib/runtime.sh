# Sourced by scripts/install, scripts/run and scripts/cluster: where the Orthanc runtime
# lives and how to start a program in it.
#
# The runtime is Debian forky's Orthanc (scripts/runtime-packages). On a forky system (the
# Docker image) it is the system itself ("native"). On Debian 12 or 13 it is a forky root
# filesystem built by scripts/install under NEURONOVA_RUNTIME_DIR [<repo>/.runtime]; programs
# start in it through a private mount namespace (unshare -m) with chroot, so every bind mount
# disappears with the process: nothing to clean up, even after kill -9. Loopback networking is
# the host's, so host-side clients talk to it as usual.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
RUNTIME_PACKAGES=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] || RUNTIME_PACKAGES+=("$pkg")
done < "$ROOT/scripts/runtime-packages"

if [[ -n "${NEURONOVA_RUNTIME:-}" ]]; then
  RUNTIME_KIND="$NEURONOVA_RUNTIME"
elif grep -qs '^VERSION_CODENAME=forky' /etc/os-release; then
  RUNTIME_KIND=native
else
  RUNTIME_KIND=rootfs
fi
RUNTIME_DIR="${NEURONOVA_RUNTIME_DIR:-$ROOT/.runtime}"
if [[ "$RUNTIME_KIND" == native ]]; then
  ROOTFS=""
  RUNTIME_VENV="${NEURONOVA_VENV:-$ROOT/.venv}"   # one venv: the plugin's and the scripts'

else
  ROOTFS="$RUNTIME_DIR/forky"
  RUNTIME_VENV="/opt/neuronova-venv"   # inside the root filesystem
fi

# Preloaded into every program of the runtime (Orthanc above all): a floor under thread
# stack sizes, and the DICOM port kept on loopback (NEURONOVA_LOOPBACK_PORTS); built by
# scripts/install from scripts/lib/preload.c (it says why).
PRELOAD_LIB=/usr/local/lib/neuronova-preload.so

# The runtime's Python version (3.14 on forky), for PYTHONPATH; written by scripts/install.
runtime_python_version() { cat "$RUNTIME_DIR/python-version"; }

# in_runtime CMD ARGS...: run CMD inside the runtime with the repository, the data folder
# (NEURONOVA_DATA_DIR, when set) and any NEURONOVA_BIND_PATHS (colon-separated) visible at
# the same paths as on the host. Replaces the shell (exec), so the PID is the program's own:
# call it in a subshell, ( in_runtime ... ), to go on afterwards.
in_runtime() {
  # DCMTK, Orthanc's DICOM stack, leaves Nagle's algorithm on unless TCP_NODELAY says otherwise
  # (unless built with DISABLE_NAGLE_ALGORITHM, which Debian's is not): every C-STORE response
  # then waits for the peer's delayed ACK. A single association storing 512x512 CT slices on
  # loopback: 49 ms an instance; with TCP_NODELAY=1 in Orthanc 19 ms, 7 ms when the sender
  # sets it too (DCMTK's storescu with TCP_NODELAY=1). docs/runtime-facts.md.
  export TCP_NODELAY="${TCP_NODELAY:-1}"
  if [[ -z "$ROOTFS" ]]; then
    [[ -e "$PRELOAD_LIB" ]] && export LD_PRELOAD="$PRELOAD_LIB"
    exec "$@"
  fi
  local binds="$ROOT"
  [[ -n "${NEURONOVA_DATA_DIR:-}" ]] && binds+=":$NEURONOVA_DATA_DIR"
  [[ -n "${NEURONOVA_BIND_PATHS:-}" ]] && binds+=":$NEURONOVA_BIND_PATHS"
  exec env -u LD_LIBRARY_PATH -u LD_PRELOAD -u PYTHONHOME PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    PRELOAD_LIB="$PRELOAD_LIB" \
    unshare --mount --propagation private -- /bin/bash -c '
    set -e
    rootfs="$1" binds="$2"; shift 2
    mount -t proc proc "$rootfs/proc"
    mount --rbind /dev "$rootfs/dev"
    # The host name must resolve (a failed look-up costs 5 s per DICOMweb search), and the
    # runtime trusts the certificate authorities the host trusts (pip, an OIDC provider).
    for f in /etc/hosts /etc/resolv.conf /etc/ssl/certs/ca-certificates.crt; do [[ -e "$f" ]] && mount --bind "$f" "$rootfs$f"; done
    IFS=: read -r -a paths <<< "$binds"
    for p in "${paths[@]}"; do
      [[ -n "$p" && -e "$p" ]] || continue
      if [[ -d "$p" ]]; then mkdir -p "$rootfs$p"; else mkdir -p "$(dirname "$rootfs$p")"; touch "$rootfs$p"; fi
      mount --bind "$p" "$rootfs$p"
    done
    preload=()
    [[ -e "$rootfs$PRELOAD_LIB" ]] && preload=(LD_PRELOAD="$PRELOAD_LIB")
    exec chroot "$rootfs" /usr/bin/env "${preload[@]}" "$@"' _ "$ROOTFS" "$binds" "$@"
}
