"""A window's frames and prompt as MiniCPM-o model inputs, with the pixel work on the device.

The model's processor resizes each frame with PIL, normalises it with numpy and cuts it into
patches, all on the CPU: about 13 ms a 640x360 frame on a fast host, the largest part of the
time to the first token. Here the frames go to the device as they are (uint8 BGR, 0.7 MB
each) and the same steps run there: PIL's bicubic resize (two antialiased passes, each rounded to
8 bits, as PIL does), normalisation with the processor's mean and std, and the processor's
patch layout. The prompt side (image placeholders, token ids, image
bounds) is the processor's own code. Sizes come from the image processor's own rules.

Only the case the engine asks for is done here: one slice per frame (max_slice_nums=1), all
frames of one size. Anything else goes through the processor itself (`processor_inputs`).
tests/test_minicpmo_real.py holds the two paths side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worker.engines.base import WindowFrame


def target_size(image_processor: Any, width: int, height: int) -> tuple[int, int] | None:
    """(width, height) the processor resizes a frame to with one slice; None if it would
    slice the frame (then only the processor itself knows what to do)."""
    if image_processor.get_sliced_grid((width, height), 1) is not None:
        return None
    best: tuple[int, int] = image_processor.find_best_resize(
        (width, height), image_processor.scale_resolution, image_processor.patch_size, True
    )
    return best


def pil_bicubic(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """PIL's BICUBIC resize of 8-bit images [n, 3, H, W] (float values 0-255): width first,
    then height, each pass antialiased and rounded to 8 bits as PIL does; equal to PIL's
    output but for one pixel in ~15,000, off by at most 2 levels."""
    if images.shape[-1] != width:
        images = F.interpolate(
            images, size=(images.shape[-2], width), mode="bicubic", antialias=True
        )
        images = images.round().clamp(0, 255)
    if images.shape[-2] != height:
        images = F.interpolate(images, size=(height, width), mode="bicubic", antialias=True)
        images = images.round().clamp(0, 255)
    return images


def pixel_patches(
    frames: list[WindowFrame], size: tuple[int, int], image_processor: Any, device: Any
) -> list[torch.Tensor]:
    """Each frame as the processor's [3, patch, patches*patch] float tensor, on `device`."""
    width, height = size
    patch = int(image_processor.patch_size)
    stacked = torch.from_numpy(np.stack([f.image for f in frames]))  # [n, H, W, 3] BGR uint8
    if getattr(device, "type", "cpu") == "cuda":
        stacked = stacked.pin_memory().to(device, non_blocking=True)
    rgb = stacked.flip(-1).permute(0, 3, 1, 2).float()
    scaled = pil_bicubic(rgb, width, height) / 255
    mean = torch.tensor(image_processor.mean, dtype=torch.float32, device=scaled.device)
    std = torch.tensor(image_processor.std, dtype=torch.float32, device=scaled.device)
    normed = (scaled - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    count = normed.shape[0]
    cols = F.unfold(normed, (patch, patch), stride=(patch, patch))  # [n, 3*p*p, patches]
    layout = cols.reshape(count, 3, patch, patch, -1).permute(0, 1, 2, 4, 3)
    return list(layout.reshape(count, 3, patch, -1))


def device_inputs(processor: Any, text: str, frames: list[WindowFrame], device: Any) -> Any:
    """Model inputs for one prompt and its frames, pixels made on `device`; None where only
    the processor itself can make them (frames of different sizes, or a frame it slices)."""
    shapes = {f.image.shape for f in frames}
    convert = getattr(processor, "_convert_omni_to_inputs", None)
    if len(shapes) != 1 or convert is None:
        return None
    height, width = frames[0].image.shape[:2]
    size = target_size(processor.image_processor, width, height)
    if size is None:
        return None
    patch = int(processor.image_processor.patch_size)
    images = {
        "pixel_values": [pixel_patches(frames, size, processor.image_processor, device)],
        "image_sizes": [[(width, height)] * len(frames)],
        "tgt_sizes": [torch.tensor([[size[1] // patch, size[0] // patch]] * len(frames))],
    }
    data = convert(images, None, [text], max_slice_nums=1, use_image_id=False, max_length=8192)
    data.pop("image_sizes", None)
    for key in ("input_ids", "attention_mask"):
        data[key] = data[key].to(device)
    data["image_bound"] = [bound.to(device) for bound in data["image_bound"]]
    data["tgt_sizes"] = [sizes.to(device) for sizes in data["tgt_sizes"]]
    return data
