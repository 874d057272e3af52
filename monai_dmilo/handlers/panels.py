"""``panels/<name>.png``: measurement | reconstruction | ground truth | error, one per image."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from monai.utils import CommonKeys as Keys

from monai_dmilo.operators.views import to_unit
from monai_dmilo.workflow.run_files import save_run_file

from .per_image import PerImageHandler, batch_value

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["PanelSaver"]


class PanelSaver(PerImageHandler):
    """Save ``panels/<name>.png``: measurement | reconstruction | ground truth | error.

    Without ground truth (inference) the panel is measurement | reconstruction. The error tile is
    ``|x - x_true|`` on the [0, 1] scale, multiplied by ``error_gain`` and clipped.

    The measurement tile is the operator's own ``view`` of ``y``; the operator is the batch's, from
    ``engine.state.output["operator"]`` (:class:`~monai_dmilo.engines.InverseProblemEvaluator`
    puts it there).

    Args:
        output_dir: the run directory.
        measurement_key: the batch key of ``y``.
        error_gain: contrast of the error tile.
        min_tile_size: tiles are upscaled (nearest) to at least this many pixels.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        measurement_key: str = "y",
        error_gain: float = 2.0,
        min_tile_size: int = 128,
        image_key: str = "image",
    ) -> None:
        super().__init__(output_dir, image_key=image_key)
        self.measurement_key = measurement_key
        self.error_gain = float(error_gain)
        self.min_tile_size = int(min_tile_size)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        output = engine.state.output
        pred = output[Keys.PRED].detach()
        target = output.get(Keys.LABEL)
        operator = output.get("operator")
        if operator is None:
            raise ValueError("PanelSaver needs the batch's operator in engine.state.output['operator']; "
                             "run it under monai_dmilo.engines.InverseProblemEvaluator.")
        y = torch.as_tensor(batch[self.measurement_key]).to(pred.device)
        views = operator.view(y, pred.shape[1:])
        folder = self.output_dir / "panels"
        folder.mkdir(parents=True, exist_ok=True)
        for b in range(pred.shape[0]):
            tiles = [views[b], to_unit(pred[b])]
            labels = ["measurement", "reconstruction"]
            if target is not None:
                truth = to_unit(target[b])
                tiles += [truth, ((tiles[1] - truth).abs() * self.error_gain).clamp(0, 1)]
                labels += ["ground truth", "error"]
            name = str(batch_value(batch, "name", b))
            self._save(tiles, labels, folder / f"{name}.png")

    def write(self, engine, batch, b, pred, target):  # pragma: no cover - __call__ is batched
        raise NotImplementedError

    def _save(self, tiles: list[torch.Tensor], labels: list[str], path: Path) -> None:
        from PIL import Image, ImageDraw

        height = tiles[1].shape[-2]
        scale = max(1, math.ceil(self.min_tile_size / height))
        rgb = []
        for t in tiles:
            t = t.float().cpu()
            t = t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3]
            t = F.interpolate(t[None], scale_factor=scale, mode="nearest")[0]
            rgb.append((t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        gap, header = 4, 16
        h, w = rgb[0].shape[:2]
        canvas = Image.new("RGB", (len(rgb) * w + (len(rgb) - 1) * gap, h + header), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (tile, label) in enumerate(zip(rgb, labels)):
            x0 = i * (w + gap)
            canvas.paste(Image.fromarray(tile), (x0, header))
            draw.text((x0 + 2, 2), label, fill="black")
        save_run_file(self.output_dir, path, lambda tmp: canvas.save(tmp, format="PNG"))
