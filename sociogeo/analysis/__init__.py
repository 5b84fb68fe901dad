"""Analysis of results: accessibility over the street network (:mod:`.access`), pictures
(:mod:`.plots`) and the notebook map widget (:mod:`.explorer`).
"""
