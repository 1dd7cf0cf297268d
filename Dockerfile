FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY projections projections
COPY api api
COPY workers workers
COPY daybook daybook
COPY schema schema
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["daybook", "serve", "--host", "0.0.0.0"]
