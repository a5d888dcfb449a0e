{#- A model configured with `+schema: features` lands in schema `features`, not `<target schema>_features`:
    the platform reads the feature table by a fixed name on every target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
