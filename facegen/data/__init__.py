"""Reading generated datasets: torch/webdataset loaders, integrity inspection, ImageFolder export.

    from facegen.data import make_dataset, make_loader
    ds = make_dataset("out/demo", target="emotion")          # yields (image CxHxW float [0,1], target)
    dl = make_loader("out/demo", batch_size=32, num_workers=4, target="identity")

Targets: ``identity`` (int), ``emotion`` (int class, facegen.labels order), ``va`` (float tensor
[valence, arousal]), ``labels`` (the sample's full JSON label dict, incl. ``key``).
"""

from facegen.data.export import export_imagefolder
from facegen.data.inspect import InspectReport, inspect_dataset
from facegen.data.loader import TARGETS, make_dataset, make_loader, shard_urls

__all__ = [
    "TARGETS",
    "InspectReport",
    "export_imagefolder",
    "inspect_dataset",
    "make_dataset",
    "make_loader",
    "shard_urls",
]
