# Sourced first by the scripts that need root (demo.sh, test.sh, setup.sh). As root they just
# run: a fresh Debian machine where you are root has no sudo. Otherwise they run themselves
# again through sudo when it is installed, and say what to do when it is not.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    echo "$(basename "$0"): needs root; running it again through sudo" >&2
    exec sudo --preserve-env=CI -- bash "$0" "$@"
  fi
  echo "$(basename "$0"): needs root (it installs packages and creates network namespaces), and sudo is not installed: run it as root, e.g. su - root, then $0" >&2
  exit 3
fi
