#!/bin/sh
# docker-compose.yml's `models-init`, run at each `docker compose up`: copy into the `models`
# volume each model version (and each model's config.json) of ./models that the volume lacks,
# then hand the volume to UID 10001, which the API (it writes uploads there) and the workers run
# as. Nothing in the volume is changed or removed. SEED, MODELS and OWNER are for tests.
set -eu
seed=${SEED:-/seed}
models=${MODELS:-/models}
owner=${OWNER:-10001:10001}

cd "$seed"
# Copied under a name the repository ignores, then renamed: a worker looking at the repository
# never sees half a file or half a version. A model's config goes in before its versions.
add() {
  mkdir -p "$(dirname "$models/$1")"
  staging="$(dirname "$models/$1")/.incoming-$(basename "$1")"
  rm -rf "$staging"
  cp -R "$1" "$staging"
  mv "$staging" "$models/$1"
}
for config in */config.json; do
  if [ -f "$config" ] && [ ! -e "$models/$config" ]; then
    add "$config"
  fi
done
for version in */*/; do
  version=${version%/}
  if [ -d "$version" ] && [ ! -e "$models/$version" ]; then
    add "$version"
    echo "models-init: added $version"
  fi
done
chown -R "$owner" "$models"
