#!/usr/bin/env bash
# Fetch the browser assets of the maps and of the API documentation pages (/docs, /redoc) from
# the npm registry into maps/static/vendor/<pkg>/ (maps.assets names them; the service serves
# the directory at /static), keeping only the dist files the pages use and each package's licence. The result is
# committed, so neither the service nor its users need the network; run this only to change
# a version (and update maps/assets.py if a file name changes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/maps/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# package@version  destination  files (relative to the package root)
PACKAGES=(
  "leaflet@1.9.4|leaflet|dist/leaflet.js dist/leaflet.css dist/images/layers.png dist/images/layers-2x.png dist/images/marker-icon.png dist/images/marker-icon-2x.png dist/images/marker-shadow.png LICENSE"
  "leaflet.markercluster@1.5.3|leaflet.markercluster|dist/leaflet.markercluster.js dist/MarkerCluster.css dist/MarkerCluster.Default.css MIT-LICENCE.txt"
  "leaflet.locatecontrol@0.79.0|leaflet.locatecontrol|dist/L.Control.Locate.min.js dist/L.Control.Locate.min.css LICENSE"
  "leaflet.vectorgrid@1.3.0|leaflet.vectorgrid|dist/Leaflet.VectorGrid.bundled.min.js"
  "leaflet.heat@0.2.0|leaflet.heat|dist/leaflet-heat.js LICENSE"
  "swagger-ui-dist@5.36.0|swagger-ui|swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE"
  "redoc@2.5.4|redoc|bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE"
)

for entry in "${PACKAGES[@]}"; do
  IFS='|' read -r spec name files <<<"$entry"
  (cd "$WORK" && npm pack --silent "$spec" >/dev/null)
  tarball="$(ls "$WORK"/*.tgz)"
  mkdir -p "$WORK/$name"
  tar xzf "$tarball" -C "$WORK/$name"
  rm -f "$tarball"
  rm -rf "${DEST:?}/$name"
  for file in $files; do
    target="$DEST/$name/$(basename "$file")"
    [[ "$file" == dist/images/* ]] && target="$DEST/$name/images/$(basename "$file")"
    mkdir -p "$(dirname "$target")"
    cp "$WORK/$name/package/$file" "$target"
  done
  echo "$spec" > "$DEST/$name/VERSION"
done

# Leaflet.VectorGrid states its licence (Beerware) in its README and ships no licence file;
# its bundled build includes pbf, vector-tile, geojson-vt and topojson (BSD/ISC licences).
sed -n '/THE BEER-WARE LICENSE/,$p' "$WORK/leaflet.vectorgrid/package/README.md" \
  > "$DEST/leaflet.vectorgrid/LICENSE"
cat >> "$DEST/leaflet.vectorgrid/LICENSE" <<'NOTE'

The bundled build (Leaflet.VectorGrid.bundled.min.js) also contains pbf and vector-tile
(BSD licence, Mapbox), geojson-vt (ISC licence, Mapbox) and topojson (BSD licence,
Michael Bostock), as stated in the package's README.
NOTE
echo "Vendored into $DEST:"
find "$DEST" -type f | sed "s|$ROOT/||" | sort
