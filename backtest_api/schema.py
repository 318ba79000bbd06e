"""OpenAPI for the envelope and the error shape, so the schema says what is sent.

drf-spectacular describes a view's serializer; the renderer wraps it in the
envelope at run time. This AutoSchema wraps 2xx schemas the same way (the
paginator already does it for lists) and adds the error responses every
endpoint can give, so schema-driven clients and schemathesis see the truth.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

ERROR_STATUSES = {
    "400": "A query parameter is invalid; `param` names it.",
    "401": "Missing, wrong or revoked API key.",
    "403": "Not allowed.",
    "404": "Unknown ticker or object.",
    "406": "The Accept header asks for a format the API does not serve.",
    "422": "The answer would read more rows than one request may (too_much_work).",
    "429": "Rate limit exceeded, or too many heavy requests at once; see Retry-After.",
}


class ErrorSerializer(serializers.Serializer):
    """The one shape of every error."""

    code = serializers.CharField(help_text="Machine-readable, e.g. invalid_parameter.")
    message = serializers.CharField(help_text="What is wrong; names the parameter.")
    param = serializers.CharField(
        allow_null=True, help_text="The bad parameter, if any."
    )
    details = serializers.JSONField(allow_null=True, required=False)
    request_id = serializers.CharField()


def envelope_schema(data_schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["data", "request_id", "response_time"],
        "properties": {
            "data": data_schema,
            "request_id": {"type": "string"},
            "response_time": {
                "type": "number",
                "description": "Seconds spent serving.",
            },
        },
    }


class EnvelopeAutoSchema(AutoSchema):
    def _get_response_for_code(
        self, serializer, status_code, media_types=None, direction="response"
    ):
        response = super()._get_response_for_code(
            serializer, status_code, media_types, direction
        )
        if not str(status_code).startswith("2") or "content" not in response:
            return response
        if self._is_list_view(serializer) and self._get_paginator():
            return response  # the paginator wrapped it already
        for media in response["content"].values():
            media["schema"] = envelope_schema(media["schema"])
        return response

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status_code, description in ERROR_STATUSES.items():
            if status_code not in responses:
                error = super()._get_response_for_code(ErrorSerializer, status_code)
                error["description"] = description
                responses[status_code] = error
        return responses


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "backtest_api.authentication.ApiKeyAuthentication"
    name = ["BearerKey", "ApiKeyHeader"]

    def get_security_requirement(self, auto_schema):
        return [{"BearerKey": []}, {"ApiKeyHeader": []}]  # either one (OR)

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "Authorization: Bearer <key>",
            },
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "backtest_api.authentication.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
