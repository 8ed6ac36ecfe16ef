import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** The window the charts show: the server keeps 180 samples, one every 5 s. */
export const WINDOW_SECONDS = 15 * 60;

interface Props {
  title: string;
  times: number[];
  values: number[];
  format: (v: number) => string;
  color: string;
}

// A small live line chart (uPlot): re-created on resize, data swapped in place on updates.
export function Chart({ title, times, values, format, color }: Props) {
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
            x: { time: true, range: () => [Date.now() / 1000 - WINDOW_SECONDS, Date.now() / 1000] },
            y: { range: (_u, _min, max) => [0, Math.max((max ?? 0) * 1.2, 1e-9)] },
          },
          axes: [
            { stroke: axisStroke, grid, ticks: grid },
            { stroke: axisStroke, grid, ticks: grid, size: 70, values: (_u, vals) => vals.map((v) => format(v)) },
          ],
          series: [
            {},
            {
              label: title,
              stroke: color,
              width: 2,
              fill: color + '22',
              // dots only while there are too few samples to draw a line
              points: { show: (_u, _s, i0, i1) => i1 - i0 < 2, size: 6 },
            },
          ],
        },
        [times, values],
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
    plot.current?.setData([times, values]);
  }, [times, values]);

  return <div class="chart" ref={box} role="img" aria-label={`${title} over the last minutes`} />;
}
