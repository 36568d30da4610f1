#!/bin/sh
# Installs what the end-to-end tests need and the machine lacks: nginx,
# Caddy, and Node.js with npm (for the OpenID provider test, which installs
# its npm packages itself), and podman with runc when no container builder
# works (for the image test in deploy/), from the distribution's packages.
# Quiet when everything is there.
set -eu

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v caddy >/dev/null 2>&1 || missing="$missing caddy"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# Without recommends, podman runs containers with runc, which works in
# sandboxes whose cgroup layout crun refuses.
sh "$(dirname "$0")/../deploy/container/build.sh" --check >/dev/null 2>&1 || missing="$missing podman runc"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing:$missing (no apt-get here; the tests that need them will skip)" >&2
	[ "${CI:-}" = "true" ] && exit 1
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	else
		echo "install-deps: missing:$missing and not root; the tests that need them will skip" >&2
		[ "${CI:-}" = "true" ] && exit 1
		exit 0
	fi
fi
echo "install-deps: installing$missing" >&2
$sudo apt-get update -qq
# Installing nginx must not start it as a service.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
