import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** The window the charts show: the server keeps 180 samples, one every 5 s. */
export const WINDOW_SECONDS = 15 * 60;

export interface Line {
  label: string;
  values: number[];
  color: string;
}

interface Props {
  title: string;
  times: number[];
  format: (v: number) => string;
  /** One line per series. */
  lines: Line[];
  /** Seconds shown, ending now (default: the dashboard's window). */
  window?: number;
}

/** Whether any line has a value above zero (before that, the y axis shows no numbers: "0.0 / 0.0 / 0" said nothing). */
function hasData(u: uPlot): boolean {
  return u.data.slice(1).some((s) => s.some((v) => v != null && v > 0));
}

// A small live line chart (uPlot): re-created on resize and theme changes, data swapped in place on updates.
export function Chart({ title, times, format, lines, window = WINDOW_SECONDS }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current!;
    const make = () => {
      plot.current?.destroy();
      // resolved colour of var(--muted) (set as the box's text colour), so the axes follow the theme
      const axisStroke = getComputedStyle(el).color || '#888';
      const grid = { stroke: 'rgba(128,128,128,0.15)' };
      plot.current = new uPlot(
        {
          width: Math.max(200, el.clientWidth),
          height: 160,
          // the legend under the chart names each line and, under the pointer, its value at that time
          legend: { show: true, live: true },
          cursor: { drag: { x: false, y: false } },
          scales: {
            // a fixed trailing window, so that a young instance with few samples does not stretch the axis
            x: { time: true, range: () => [Date.now() / 1000 - window, Date.now() / 1000] },
            y: { range: (_u, _min, max) => [0, Math.max((max ?? 0) * 1.2, 1e-9)] },
          },
          axes: [
            { stroke: axisStroke, grid, ticks: grid },
            {
              stroke: axisStroke,
              grid,
              ticks: grid,
              // wide enough for the longest label ("512.0 MiB" is not clipped); no numbers before there is data
              size: (_u: uPlot, vals: string[] | null) => 16 + 7.5 * Math.max(3, ...(vals ?? []).map((v) => v.length)),
              values: (u: uPlot, vals: number[]) => (hasData(u) ? vals.map((v) => format(v)) : vals.map(() => '')),
            },
          ],
          series: [
            {},
            ...lines.map((l) => ({
              label: l.label,
              value: (_u: uPlot, v: number | null) => (v == null ? '—' : format(v)),
              stroke: l.color,
              width: 2,
              fill: l.color + '22',
              // dots only while there are too few samples to draw a line
              points: { show: (_u: uPlot, _s: number, i0: number, i1: number) => i1 - i0 < 2, size: 6 },
            })),
          ],
        },
        [times, ...lines.map((l) => l.values)],
        el,
      );
    };
    make();
    const ro = new ResizeObserver(() => make());
    ro.observe(el);
    // redraw with the new axis colours when the theme is switched
    const mo = new MutationObserver(() => make());
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    return () => {
      ro.disconnect();
      mo.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData([times, ...lines.map((l) => l.values)]);
  }, [times, lines]);

  const empty = !lines.some((l) => l.values.some((v) => v > 0));
  return (
    <div class="chart-box">
      <div class="chart" ref={box} role="img" aria-label={title} />
      {empty && <p class="chart-empty muted small">No data yet</p>}
    </div>
  );
}
