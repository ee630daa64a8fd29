// The type the dashboard JSON must satisfy. generate.mjs writes generated/dashboard.gen.ts as
// `export const dashboard = <the JSON text> satisfies ImportableDashboard;` and tsc --noEmit
// checks it: wrong value types, unknown keys (excess-property checks), bad enum values and
// duplicate keys all fail, reported at the JSON's own line numbers.
import type { DataQuery, Dashboard, Panel, RowPanel } from "@grafana/schema";

// Panel targets are only Record<string, unknown> in the v1 model. Grafana's common DataQuery
// (refId required; hide/queryType/key/datasource typed) is what every datasource's query
// extends; datasource-specific fields (expr, legendFormat, format, ...) stay open.
export type Query = DataQuery & Record<string, unknown>;
export interface QueryPanel extends Omit<Panel, "targets"> {
  targets?: Query[];
}
export interface QueryRowPanel extends Omit<RowPanel, "panels"> {
  panels: QueryPanel[];
}

// Grafana's classic (v1, "schemaVersion") dashboard model from @grafana/schema, generated from
// Grafana's CUE dashboard kind. The three __ keys are what "Export for sharing externally"
// adds; Dashboards -> Import reads and strips them, so they are not in the model type.
export interface ImportableDashboard extends Omit<Dashboard, "panels"> {
  panels?: Array<QueryPanel | QueryRowPanel>;
  __inputs?: Array<Record<string, unknown>>;
  __requires?: Array<Record<string, unknown>>;
  __elements?: Record<string, unknown>;
}
