"""Routes: readings (being built)."""

from fastapi import APIRouter

router = APIRouter()
