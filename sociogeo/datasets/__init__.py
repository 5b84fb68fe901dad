"""Datasets: SocioSeg (hub or folders), training data built for new cities from OpenStreetMap,
and the ground-truth boxes of a mask as the release's rewards derive them.
"""
