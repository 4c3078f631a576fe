"""Routes: exports (being built)."""

from fastapi import APIRouter

router = APIRouter()
