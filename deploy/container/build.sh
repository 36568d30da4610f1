#!/bin/sh
# build.sh BINARY TAG builds Verdict's container image TAG from BINARY (a
# static Linux build of cmd/verdict; `make image` makes one) and
# Containerfile, with the first OCI builder that works on this machine:
# podman, buildah, or docker with a running daemon. BUILDER=NAME picks one.
#
# build.sh --check prints the builder it would use, and exits 3 when none
# works (as a build does).
#
# VERSION labels the image; CA_BUNDLE is the CA certificates copied in
# (default: Debian's and Alpine's /etc/ssl/certs/ca-certificates.crt).
set -eu

here=$(cd "$(dirname "$0")" && pwd)

# works NAME reports whether builder NAME is installed and can build here.
works() {
	command -v "$1" >/dev/null 2>&1 || return 1
	case $1 in
	podman | buildah | docker) "$1" info >/dev/null 2>&1 ;;
	*) return 1 ;;
	esac
}

builder=""
if [ -n "${BUILDER:-}" ]; then
	if ! works "$BUILDER"; then
		echo "build.sh: BUILDER=$BUILDER does not work here (not installed, or '$BUILDER info' fails: for docker, is the daemon running?)" >&2
		exit 3
	fi
	builder=$BUILDER
else
	for b in podman buildah docker; do
		if works "$b"; then
			builder=$b
			break
		fi
	done
fi
if [ -z "$builder" ]; then
	echo "build.sh: no container builder works here: install podman (apt-get install podman) or buildah, or start a docker daemon" >&2
	exit 3
fi

if [ "${1:-}" = "--check" ]; then
	echo "$builder"
	exit 0
fi
if [ $# -ne 2 ]; then
	echo "usage: build.sh BINARY TAG | build.sh --check" >&2
	exit 2
fi
bin=$1
tag=$2
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$bin" ] || { echo "build.sh: no binary at $bin" >&2; exit 2; }
[ -f "$ca" ] || { echo "build.sh: no CA bundle at $ca (set CA_BUNDLE; on Debian: apt-get install ca-certificates)" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/verdict"
cp "$ca" "$ctx/ca-certificates.crt"
chmod 0755 "$ctx/verdict"
chmod 0644 "$ctx/ca-certificates.crt"

case $builder in
buildah) set -- buildah build ;;
*) set -- "$builder" build ;;
esac
"$@" --file "$here/Containerfile" --build-arg "VERSION=${VERSION:-dev}" --tag "$tag" "$ctx" >&2
echo "build.sh: built $tag with $builder" >&2
