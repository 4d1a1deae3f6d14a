"""The peers' pyramid writers, configured alike for every benchmark: 3D downsampling by 2, 4 and 8."""

import warnings

FACTORS = (2, 4, 8)  # levels 1..3, isotropic


def _scale_factors():
    return [{d: f for d in "zyx"} for f in FACTORS]


def write_ngff_zarr(array, out):
    """ngff-zarr with its ITK-Wasm Gaussian downsampling, OME-NGFF 0.5, 64^3 chunks."""
    import ngff_zarr as nz

    image = nz.to_ngff_image(array, dims=["z", "y", "x"])
    multiscales = nz.to_multiscales(image, scale_factors=_scale_factors(), method=nz.Methods.ITKWASM_GAUSSIAN, chunks=64)
    nz.to_ngff_zarr(out, multiscales, version="0.5")


def write_ome_zarr(array, out):
    """ome-zarr-py's write_image (its default anti-aliased resize), OME-NGFF 0.5."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    group = zarr.open_group(out, mode="w", zarr_format=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(array, group, fmt=FormatV05(), axes=["z", "y", "x"], scale_factors=_scale_factors())
