#!/usr/bin/env bash
# Pushes the Nix-built images to the registry stack's repositories with skopeo (no Docker
# daemon) and prints each pushed image's digest.
#
# Usage: push-images.sh IMAGES_DIR REGISTRY TAG
#   IMAGES_DIR  holds nton-job.tar.gz, nton-init.tar.gz, nton-watch.tar.gz
#               (docker-archive tarballs: the output of `nix build .#images`)
#   REGISTRY    <account>.dkr.ecr.<region>.amazonaws.com/<prefix>, the registry stack's
#               ImageRegistry (`nton deploy --only registry --json` prints it as imageRegistry)
#   TAG         e.g. git-<commit>; pushed to every repository
#
# The repositories' tags are immutable: a tag that is already there (a re-run for the same
# commit) is kept, not pushed again. AWS credentials come from the environment.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 IMAGES_DIR REGISTRY TAG" >&2
  exit 2
fi
images_dir=$1
registry=$2
tag=$3
host=${registry%%/*}

if ! command -v skopeo >/dev/null; then
  sudo apt-get update -qq
  sudo apt-get install -y -qq skopeo
fi

aws ecr get-login-password | skopeo login --username AWS --password-stdin "$host"

for name in nton-job nton-init nton-watch; do
  archive="$images_dir/$name.tar.gz"
  if [ ! -f "$archive" ]; then
    echo "push-images: $archive is missing (expected from nix build .#images)" >&2
    exit 1
  fi
  target="docker://$registry/$name:$tag"
  if skopeo inspect --raw "$target" >/dev/null 2>&1; then
    echo "push-images: $registry/$name:$tag is already there (tags are immutable); keeping it"
  else
    skopeo copy --retry-times 3 "docker-archive:$archive" "$target"
  fi
  # The digest of the manifest as stored: `skopeo inspect --raw` reads only the manifest
  # (ecr:BatchGetImage); a plain inspect also fetches the config blob, which ECR authorises as
  # ecr:GetDownloadUrlForLayer, which the deploy role does not have.
  manifest=$(mktemp)
  skopeo inspect --raw "$target" >"$manifest"
  digest=$(skopeo manifest-digest "$manifest")
  rm -f "$manifest"
  echo "push-images: $registry/$name:$tag is $digest"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    echo "| $name | \`$tag\` | \`$digest\` |" >>"$GITHUB_STEP_SUMMARY"
  fi
done
