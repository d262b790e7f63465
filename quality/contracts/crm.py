"""Ingestion contracts of the CRM's objects (JSON from the API; timestamps in mixed forms)."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from quality.contracts.base import CURRENCIES, Contract, valid_email

Money = Annotated[pl.Decimal, 18, 2]
Timestamp = Annotated[pl.Datetime, "us", "UTC"]
STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]


class Accounts(pa.DataFrameModel):
    Id: str
    Name: str
    ParentId: str | None = pa.Field(nullable=True)
    BillingCountry: str | None = pa.Field(nullable=True)
    TaxId: str | None = pa.Field(nullable=True)
    Website: str | None = pa.Field(nullable=True)
    Phone: str | None = pa.Field(nullable=True)
    Industry: str | None = pa.Field(nullable=True)
    CreatedDate: Timestamp
    LastModifiedDate: Timestamp
    SystemModstamp: Timestamp
    # Written back by the enterprise (reverse ETL); null until the first sync.
    Enterprise_State__c: str | None = pa.Field(nullable=True)
    Enterprise_Delinquent__c: pl.Boolean | None = pa.Field(nullable=True)
    Enterprise_MRR_USD__c: Money | None = pa.Field(nullable=True)
    Enterprise_Churn_Risk__c: str | None = pa.Field(nullable=True)
    Enterprise_Churn_Reasons__c: str | None = pa.Field(nullable=True)


class Contacts(pa.DataFrameModel):
    Id: str
    AccountId: str
    FirstName: str | None = pa.Field(nullable=True)
    LastName: str
    Email: str | None = pa.Field(nullable=True)
    Phone: str | None = pa.Field(nullable=True)
    Title: str | None = pa.Field(nullable=True)
    CreatedDate: Timestamp
    LastModifiedDate: Timestamp
    SystemModstamp: Timestamp


class Leads(pa.DataFrameModel):
    Id: str
    FirstName: str | None = pa.Field(nullable=True)
    LastName: str
    Email: str
    Company: str | None = pa.Field(nullable=True)
    Score: pl.Int64 = pa.Field(ge=0, le=100)
    Status: str = pa.Field(isin=["Open", "MQL", "SAL", "Converted", "Disqualified"])
    LeadSource: str | None = pa.Field(nullable=True)
    CreatedDate: Timestamp
    LastModifiedDate: Timestamp
    SystemModstamp: Timestamp

    @pa.check("Email", name="valid_email")
    @classmethod
    def email_is_valid(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return valid_email(data)


class LeadHistory(pa.DataFrameModel):
    Id: str
    LeadId: str
    Field: str = pa.Field(isin=["Score", "Status"])
    OldValue: str | None = pa.Field(nullable=True)
    NewValue: str
    CreatedDate: Timestamp
    SystemModstamp: Timestamp


class Opportunities(pa.DataFrameModel):
    Id: str
    AccountId: str
    Name: str
    StageName: str = pa.Field(isin=STAGES)
    Amount: Money = pa.Field(gt=0)
    CurrencyIsoCode: str = pa.Field(isin=CURRENCIES)
    CloseDate: pl.Date
    IsClosed: pl.Boolean
    IsWon: pl.Boolean
    CreatedDate: Timestamp
    LastModifiedDate: Timestamp
    SystemModstamp: Timestamp


class OpportunityHistory(pa.DataFrameModel):
    Id: str
    OpportunityId: str
    Field: str = pa.Field(isin=["StageName"])
    OldValue: str | None = pa.Field(nullable=True)
    NewValue: str = pa.Field(isin=STAGES)
    CreatedDate: Timestamp
    SystemModstamp: Timestamp


CONTRACTS = [
    Contract(
        "crm",
        "accounts",
        Accounts,
        key=("Id",),
        written_back=(
            "Enterprise_State__c",
            "Enterprise_Delinquent__c",
            "Enterprise_MRR_USD__c",
            "Enterprise_Churn_Risk__c",
            "Enterprise_Churn_Reasons__c",
        ),
    ),
    Contract("crm", "contacts", Contacts, key=("Id",), references={"AccountId": ("accounts", "Id")}),
    Contract("crm", "leads", Leads, key=("Id",)),
    Contract("crm", "lead_history", LeadHistory, key=("Id",), references={"LeadId": ("leads", "Id")}),
    Contract("crm", "opportunities", Opportunities, key=("Id",), references={"AccountId": ("accounts", "Id")}),
    Contract(
        "crm",
        "opportunity_history",
        OpportunityHistory,
        key=("Id",),
        references={"OpportunityId": ("opportunities", "Id")},
    ),
]
