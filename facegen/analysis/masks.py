"""Face masks (the AD loss's M_n) from the landmark face-oval polygon; implemented in `facegen.conditions.masks`."""

from facegen.conditions.masks import face_mask, face_masks

__all__ = ["face_mask", "face_masks"]
