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
          legend: { show: false },
          cursor: { drag: { x: false, y: false } },
          scales: {
            // a fixed trailing window, so that a young instance with few samples does not stretch the axis
            x: { time: true, range: () => [Date.now() / 1000 - window, Date.now() / 1000] },
            y: { range: (_u, _min, max) => [0, Math.max((max ?? 0) * 1.2, 1e-9)] },
          },
          axes: [
            { stroke: axisStroke, grid, ticks: grid },
            { stroke: axisStroke, grid, ticks: grid, size: 70, values: (_u, vals) => vals.map((v) => format(v)) },
          ],
          series: [
            {},
            ...lines.map((l) => ({
              label: l.label,
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

  return (
    <div>
      <div class="chart" ref={box} role="img" aria-label={title} />
      {lines.length > 1 && (
        <p class="legend small">
          {lines.map((l) => (
            <span>
              <i style={{ background: l.color }} /> {l.label}
            </span>
          ))}
        </p>
      )}
    </div>
  );
}
