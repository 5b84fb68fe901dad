"""Every default that more than one step of sociogeo uses, in one place.

Change a default here and the Python API, the command line, the map explorer and training all
follow. Values that belong to one module only (e.g. a renderer's colours) stay in that module.
"""

from __future__ import annotations

#: The released SocioReasoner policy (Qwen2.5-VL-3B fine-tuned with GRPO), a Hugging Face Hub id.
VLM = "vvangfaye/SocioReasoner-3B"
#: The segmenter the release uses: SAM 2.0 Hiera-Large, frozen (a Hugging Face Hub id).
SAM = "facebook/sam2-hiera-large"
#: SAM v1 model types understood as names (their checkpoints download from Meta's site).
SAM1_TYPES = ("vit_h", "vit_l", "vit_b")

#: Satellite imagery: an xyzservices provider name.
SATELLITE = "Esri.WorldImagery"
#: Street-map tiles: an xyzservices provider name (``"osm"`` renders the map locally instead).
MAP = "OpenStreetMap.Mapnik"
#: The map value that renders the street map from OpenStreetMap data instead of downloading tiles.
OSM_MAP = "osm"

#: XYZ zoom level of the imagery grid (about 1.2 m/px at the equator, 0.6 m/px at 60° N).
ZOOM = 17
#: Ground resolution (metres per pixel) of the imagery SocioReasoner was trained on: SocioSeg's
#: chips are Web-Mercator tiles at zoom 17-18, about 0.6-1.2 m/px at the latitudes of its cities.
MODEL_RESOLUTION_M = (0.6, 1.2)
#: A grid this many times finer or coarser than :data:`MODEL_RESOLUTION_M` gets a ResolutionWarning.
RESOLUTION_TOLERANCE = 2.0
#: Chip side in pixels: SocioSeg's image size; the model sees it as 756 px (``smart_resize``).
CHIP_SIZE = 768
#: Chips (times queries) per model call.
BATCH_SIZE = 4
#: Polygons smaller than this many square metres are dropped from results.
MIN_AREA_M2 = 10.0
#: Largest area (km²) accepted without ``max_area_km2=`` / ``--max-area-km2``.
MAX_AREA_KM2 = 25.0
#: Longest answer per stage, in tokens (the release's limit).
MAX_NEW_TOKENS = 2048

#: SocioSeg on the Hugging Face Hub.
SOCIOSEG = "vvangfaye/SocioSeg"
