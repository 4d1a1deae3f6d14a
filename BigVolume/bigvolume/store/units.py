"""Physical units of OME-NGFF space axes, converted to millimetres (Slicer's unit)."""

from ..errors import MetadataError

# UDUNITS-2 length units allowed by OME-NGFF 0.4/0.5, as millimetres per unit.
_MM_PER_UNIT = {
    "yoctometer": 1e-21,
    "zeptometer": 1e-18,
    "attometer": 1e-15,
    "femtometer": 1e-12,
    "picometer": 1e-9,
    "angstrom": 1e-7,
    "nanometer": 1e-6,
    "micrometer": 1e-3,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "decimeter": 100.0,
    "meter": 1e3,
    "hectometer": 1e5,
    "kilometer": 1e6,
    "megameter": 1e9,
    "gigameter": 1e12,
    "terameter": 1e15,
    "petameter": 1e18,
    "exameter": 1e21,
    "zettameter": 1e24,
    "yottameter": 1e27,
    "inch": 25.4,
    "foot": 304.8,
    "yard": 914.4,
    "mile": 1609344.0,
    "parsec": 3.0856775814913673e19,
}

# Spellings seen in the wild (ImageJ, Bio-Formats, older writers).
_ALIASES = {
    "µm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "nm": "nanometer",
    "Å": "angstrom",
    "micrometre": "micrometer",
    "millimetre": "millimeter",
    "nanometre": "nanometer",
    "centimetre": "centimeter",
    "metre": "meter",
}

SPACE_UNITS = tuple(_MM_PER_UNIT)


def canonical_space_unit(unit):
    """Return the OME-NGFF spelling of a length unit, or raise MetadataError."""
    if unit is None:
        return None
    name = _ALIASES.get(unit, _ALIASES.get(str(unit).lower(), str(unit).lower()))
    if name not in _MM_PER_UNIT:
        raise MetadataError(f"unknown space unit {unit!r}; expected one of {', '.join(SPACE_UNITS)}")
    return name


def mm_per_unit(unit):
    """Millimetres in one `unit`. A missing unit is taken as millimetres, Slicer's default."""
    if unit is None:
        return 1.0
    return _MM_PER_UNIT[canonical_space_unit(unit)]
