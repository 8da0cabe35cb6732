"""synthface: a face domain with known truth (identity, pose, expression, emotion) for facegen.

Faces are the project's 478-point face mesh, deformed by identity shape and expression parameters and
rendered as lit 3D triangles (`render_face`). Every label is known exactly, so the domain trains the
whole FaceCrafter recipe on a CPU and measures what the trained model controls.
"""

from facegen.synthface.params import FaceSpec, Nuisance, identity_embedding, identity_params
from facegen.synthface.render import RenderedFace, render_face

__all__ = ["FaceSpec", "Nuisance", "RenderedFace", "identity_embedding", "identity_params", "render_face"]
