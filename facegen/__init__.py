"""facegen: balanced, labelled synthetic face datasets with FaceCrafter on Ray."""

__version__ = "0.1.0"
