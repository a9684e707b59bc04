"""Wire shapes of the public JSON: the profile and the shields.io endpoint badge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PublicTotals(BaseModel):
    tree_planted: int = Field(description="Trees planted")
    waste_removed: int = Field(description="Pounds of ocean plastic removed")
    carbon_captured: int = Field(description="Pounds of CO₂ captured")
    coral_restored: int = Field(description="Coral fragments restored")
    money_donated: int = Field(description="US cents donated")


class PublicUnits(BaseModel):
    tree_planted: str = Field(examples=["trees"])
    waste_removed: str = Field(examples=["lbs"])
    carbon_captured: str = Field(examples=["lbs CO₂"])
    coral_restored: str = Field(examples=["coral fragments"])
    money_donated: str = Field(examples=["US cents"])


class PublicProfileOut(BaseModel):
    slug: str = Field(description="The profile's address: /impact/{slug}")
    name: str = Field(description="The display name the business chose")
    logo_url: str | None = Field(description="An http(s) URL of the business's logo, or null")
    profile_url: str = Field(description="The profile page")
    totals: PublicTotals = Field(
        description="Lifetime production totals: direct impact plus impact on behalf of "
        "customers; cancelled impacts are not counted"
    )
    units: PublicUnits = Field(description="The unit of each total")


class EndpointBadge(BaseModel):
    """https://shields.io/badges/endpoint-badge"""

    model_config = ConfigDict(populate_by_name=True)

    schemaVersion: int = Field(1, description="Always 1")
    label: str = Field(description="The left-hand text")
    message: str = Field(description="The right-hand text: the total")
    color: str = Field(description="A shields.io colour name or hex colour without #")
