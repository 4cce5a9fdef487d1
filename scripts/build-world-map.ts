/**
 * Builds the dashboard's world map (public/maps/world-110m.json) from npm packages: Natural
 * Earth's 1:110m countries (world-atlas, TopoJSON), converted with topojson-client and
 * projected with d3-geo's Natural Earth projection into SVG path strings keyed by ISO 3166-1
 * alpha-2 code. The page then only colours paths: no geometry work per request, no client
 * script, no CDN. Run again only to change the projection or size: `npx tsx scripts/build-world-map.ts`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { geoNaturalEarth1, geoPath } from 'd3-geo';
import countries from 'i18n-iso-countries';
import { feature } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import world from 'world-atlas/countries-110m.json';

const WIDTH = 960;
const HEIGHT = 440;
const out = path.join(__dirname, '..', 'public', 'maps', 'world-110m.json');

const topology = world as unknown as Topology<{ countries: GeometryCollection<{ name: string }> }>;
// Antarctica holds no customers and takes a fifth of the height: left out.
const shapes = feature(topology, topology.objects.countries).features.filter((f) => f.id !== '010');
const collection = { type: 'FeatureCollection' as const, features: shapes };
const projection = geoNaturalEarth1().fitSize([WIDTH, HEIGHT], collection);
const toPath = geoPath(projection).digits(1);

const result = shapes
  .map((f) => ({ code: f.id ? (countries.numericToAlpha2(String(f.id)) ?? null) : null, name: f.properties.name, d: toPath(f) ?? '' }))
  .filter((c) => c.d)
  .sort((a, b) => (a.code ?? '~').localeCompare(b.code ?? '~'));

fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, `${JSON.stringify({ source: 'Natural Earth 1:110m via world-atlas 2 (public domain), Natural Earth projection', width: WIDTH, height: HEIGHT, countries: result })}\n`);
console.log(`${result.length} countries (${result.filter((c) => !c.code).length} without an ISO code) → ${path.relative(process.cwd(), out)} (${fs.statSync(out).size} bytes)`);
