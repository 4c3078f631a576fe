"""Routes: alerts (being built)."""

from fastapi import APIRouter

router = APIRouter()
