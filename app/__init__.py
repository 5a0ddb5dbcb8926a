"""RaML Explorer's Streamlit front end: pages, URL state, cached loaders and plotly figure builders.

Reads runs through ``backend`` only; no model math lives here.
"""
